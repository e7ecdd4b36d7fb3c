//! Fuzzing oracle for the replay writer (`fuzz/fuzz_targets/pitr_replay.rs`, and a unit
//! test over pseudo-random inputs): a record stream decoded from arbitrary bytes is
//! replayed onto a small good database. It must never panic; when the replay is accepted,
//! the patched image must pass the strict check, end at the target revision and hash; a
//! second replay of the same stream onto the result must be refused (its changes are at or
//! before the new database's revision) or be empty. Panics (a finding) otherwise.
//! Test-only (feature `testkit`).

use std::sync::OnceLock;

use std::collections::HashMap;

use super::{replay, replay_compacted, replay_held_as, Record, Replayed, Replaying};
use crate::format::bolt::build::etcd_like;
use crate::format::bolt::{check, CheckOptions, Db, EntryVisitor};
use crate::format::capture::KeyValue;
use crate::format::etcd::hashkv::{hashkv, Answers};
use crate::format::etcd::{last_revision, meta_fields, KeyValueRef, RevKey};

struct Nothing;
impl EntryVisitor for Nothing {}

/// Three bases: empty `key`, a few keys inline, a bucket of pages.
fn bases() -> &'static [Vec<u8>; 3] {
    static B: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    B.get_or_init(|| {
        [
            etcd_like(4096, 0, 8),
            etcd_like(4096, 3, 8),
            etcd_like(4096, 200, 30),
        ]
    })
}

/// Bytes → (base image, records, target revision).
fn decode(data: &[u8]) -> (&'static [u8], Vec<Record>, i64) {
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let which = next().unwrap_or(0) as usize % 3;
    let img = &bases()[which];
    // etcd_like(n) ends at revision n + 1 (1 when empty).
    let base = [1i64, 4, 201][which];
    let (mut rev, mut records) = (base, Vec::new());
    while let (Some(op), Some(a)) = (next(), next()) {
        let key = format!("/f/{}", a % 16).into_bytes();
        let small = i64::from(a);
        match op % 10 {
            0 | 1 => {
                if op % 10 == 0 || rev == base {
                    rev += 1;
                }
                // Mostly a valid put; sometimes fields only a broken capture would write.
                let odd = op >= 240;
                records.push(Record::Put(KeyValue {
                    key: if odd && a % 7 == 0 { Vec::new() } else { key },
                    create_revision: if odd { small - 3 } else { rev },
                    mod_revision: rev,
                    version: if odd { small % 3 } else { 1 },
                    value: vec![a; usize::from(a % 40)],
                    lease: if a % 5 == 0 { 7 } else { 0 },
                }));
            }
            2 | 3 => {
                if op % 10 == 2 || rev == base {
                    rev += 1;
                }
                records.push(Record::Delete { key, revision: rev });
            }
            4 => records.push(Record::LeaseGrant {
                id: small - 2,
                ttl: 30,
                revision: rev,
            }),
            5 => records.push(Record::LeaseRevoke {
                id: small - 2,
                revision: rev,
            }),
            6 => records.push(Record::Compact {
                compact_revision: rev - small % 8,
                revision: rev,
            }),
            7 => records.push(Record::LiveHash {
                revision: rev - small % 3,
                hash: u32::from(a) * 0x0101_0101,
                compact_revision: -1,
            }),
            8 | 9 if op < 240 => records.push(Record::Clock {
                revision: rev,
                unix_ms: small,
            }),
            // A gap, or a step back (records out of order).
            _ => rev = if a % 2 == 0 { rev + 2 } else { rev - 1 },
        }
    }
    let to = match data.last() {
        Some(b) if b % 4 == 0 => rev - i64::from(b % 3),
        Some(b) if b % 4 == 1 => rev + 1,
        _ => rev,
    };
    (img, records, to)
}

/// Replay onto a copy of `img` in transactions of `chunk` bytes.
fn replay_chunked(
    img: &[u8],
    records: &[Record],
    to: i64,
    chunk: usize,
) -> Option<(Vec<u8>, Replayed)> {
    let mut out = img.to_vec();
    let mut rep = Replaying::new(&mut out, to, chunk).ok()?;
    for r in records {
        rep.feed(r).ok()?;
    }
    let done = rep.finish().ok()?;
    Some((out, done))
}

/// Every entry of buckets `key`, `lease` and `meta`.
fn contents(img: &[u8]) -> Contents {
    let db = Db::open(img).expect("replayed database opens");
    let mut out = Vec::new();
    for (i, name) in [&b"key"[..], b"lease", b"meta"].into_iter().enumerate() {
        if let Some(b) = db.bucket(name).expect("bucket reads") {
            let mut c = b.cursor();
            while let Some(e) = c.next().expect("entry reads") {
                out.push((i as u8, e.key.to_vec(), e.value.to_vec()));
            }
        }
    }
    out
}

/// Every user key live at `rev` in `img`, with its value bytes (the `KeyValue`). Hashed,
/// not ordered: compared only for equality, and ordered keys would be a `memcmp` each,
/// which libFuzzer intercepts at a cost.
fn state_at(img: &[u8], rev: i64) -> HashMap<Vec<u8>, Vec<u8>> {
    let db = Db::open(img).expect("replayed database opens");
    let mut newest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    if let Some(b) = db.bucket(b"key").expect("bucket reads") {
        let mut c = b.cursor();
        while let Some(e) = c.next().expect("entry reads") {
            let rk = RevKey::parse(e.key).expect("a revision key");
            if rk.rev.main > rev {
                continue;
            }
            let kv = KeyValueRef::decode(e.value).expect("a KeyValue");
            let v = (!rk.tombstone).then(|| e.value.to_vec());
            newest.insert(kv.key.to_vec(), v);
        }
    }
    newest
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// The compaction a restored member runs to (finished or scheduled), -1 if none.
fn compaction_of(img: &[u8]) -> i64 {
    let db = Db::open(img).expect("replayed database opens");
    let m = meta_fields(&db).expect("meta reads");
    m.finished_compact.max(m.scheduled_compact).unwrap_or(-1)
}

/// The hashkv etcd answers at `rev` for `img` with compaction `compact` once it has
/// finished that compaction (None: refused).
fn hash_of(img: &[u8], rev: i64, compact: Option<i64>) -> Option<u32> {
    answers_of(img, rev, compact).map(|a| a.best())
}

/// Every answer etcd may give at `rev` for `img` with compaction `compact` (None: refused).
fn answers_of(img: &[u8], rev: i64, compact: Option<i64>) -> Option<Answers> {
    let db = Db::open(img).expect("replayed database opens");
    hashkv(&db, rev, compact)
        .expect("hashkv reads")
        .ok()
        .map(|(_, hk)| hk.answers())
}

/// The compacted replay of a stream the whole replay accepted (`out`, `whole`): accepted
/// too, a good database at `to` with the same live state, the hash etcd answers there
/// once it finished the compaction, and its newest live hash proven; a live hash made at
/// a revision and compaction from the input (`pick`) proven when right, refused (exit 3)
/// when wrong. Then the same replay in transactions of `chunk` bytes gives the same data.
fn exercise_compacted(
    img: &[u8],
    records: &[Record],
    to: i64,
    out: &[u8],
    whole: &Replayed,
    pick: u8,
) {
    let (small, r) = replay_compacted(&img, records, to, super::CHUNK_BYTES)
        .unwrap_or_else(|e| panic!("accepted whole, refused compacted: {e}"));
    let c = check(&small, &CheckOptions::default(), &mut Nothing);
    assert!(
        c.ok(),
        "compacted replay broke a good database: {:?}",
        c.problems
    );
    let db = Db::open(&small[..]).expect("compacted database opens");
    assert_eq!(last_revision(&db).expect("a revision"), to);
    assert_eq!(
        state_at(out, to),
        state_at(&small, to),
        "other live data at {to}"
    );
    let compact = compaction_of(&small);
    // Once the compaction has finished, both databases hold the same entries (the
    // compacted one never wrote what it removes): the same settled hashkv, also where no
    // key is live at `to` and etcd hashes every entry still stored (DESIGN.md, hashkv).
    let small_answers = answers_of(&small, to, None);
    let small_hash = small_answers.as_ref().map(|a| a.best());
    assert_eq!(
        hash_of(out, to, Some(compact)),
        small_hash,
        "another hashkv at {to} after the compaction at {compact}"
    );
    assert_eq!(r.hashkv, small_hash);
    assert_eq!(
        r.hashkv_while_compacting,
        small_answers.and_then(|a| a.while_compacting())
    );
    // What `small` holds, computed once: every replay below is compared with it.
    let small = contents(&small);
    held_agrees(img, records, to, &small, &r, pick);
    if let Some(last) = r.checked.last() {
        assert!(
            whole.checked.contains(last),
            "proved {last}, the whole replay did not"
        );
    }
    // A live hash at a revision of the window, with a compaction, as the full history says.
    let base = whole.replay.base_revision;
    if to <= base {
        return;
    }
    let at = base + 1 + i64::from(pick) % (to - base);
    let live_compact = match pick % 3 {
        0 => -1,
        _ => 1 + i64::from(pick / 3) % at,
    };
    let Some(answers) = answers_of(out, at, Some(live_compact)) else {
        return;
    };
    // The compacted replay reads the window in order: where no key is live at `at` and the
    // compaction is inside the window, it cannot know what that compaction left, and a
    // hash it does not recognise is neither proven nor refused.
    let unknowable = state_at(out, at).is_empty() && live_compact > base;
    let right = answers.best();
    let mut cases = vec![(right, true), (right ^ 1, false)];
    if let Some(other) = answers.while_compacting() {
        cases.push((other, true));
    }
    for (hash, ok) in cases {
        let ok = ok || answers.accepts(hash);
        let mut with = records.to_vec();
        with.retain(|x| !matches!(x, Record::LiveHash { .. }));
        // Before the first record after `at` (not a binary search: the records after `to`
        // need not be in order, and the replay stops at the first of them).
        let pos = with
            .iter()
            .position(|x| x.revision() > at)
            .unwrap_or(with.len());
        with.insert(
            pos,
            Record::LiveHash {
                revision: at,
                hash,
                compact_revision: live_compact,
            },
        );
        // The whole replay proves every answer etcd may give.
        match (replay(&img, &with, to), ok) {
            (Ok((_, r)), true) => assert!(r.checked.contains(&at), "whole: {at} not proven"),
            (Err(e), false) => assert_eq!(e.exit_code() as i32, 3, "{e}"),
            (Ok(_), false) => panic!("whole: a wrong live hash at {at} was accepted"),
            (Err(e), true) => panic!("whole: the right live hash at {at} was refused: {e}"),
        }
        let got = replay_compacted(&img, &with, to, 1 + usize::from(pick) * 8);
        let got = got.map(|(again, r)| (contents(&again), r));
        if let Ok((again, r)) = &got {
            held_agrees(img, &with, to, again, r, pick);
        }
        if unknowable && hash != answers.as_is {
            match got {
                Ok((_, r)) => assert!(!r.checked.contains(&at), "proved {at}, it cannot"),
                Err(e) => panic!("a live hash at {at} it cannot know was refused: {e}"),
            }
            continue;
        }
        match (got, ok) {
            (Ok((again, r)), true) => {
                assert_eq!(
                    r.checked.last(),
                    Some(&at),
                    "the live hash at {at} not proven"
                );
                assert_eq!(again, small, "chunks wrote other data");
            }
            (Err(e), false) => assert_eq!(e.exit_code() as i32, 3, "{e}"),
            (Ok(_), false) => panic!("a wrong live hash at {at} was accepted"),
            (Err(e), true) => panic!("the right live hash at {at} was refused: {e}"),
        }
    }
}

/// What [`contents`] returns.
type Contents = Vec<(u8, Vec<u8>, Vec<u8>)>;

/// The compacted replay read once ([`replay_held`]; with a budget from `pick` that may be
/// outgrown, then read twice; fed before its database is at hand for half the picks, as
/// `restore plan --compact` feeds it) writes the data, stats and proof of the replay read
/// twice (its [`contents`] `small`, `r`).
fn held_agrees(img: &[u8], records: &[Record], to: i64, small: &Contents, r: &Replayed, pick: u8) {
    let budget = match pick % 4 {
        0 => 1 << 30,
        p => usize::from(pick) * 16 * usize::from(p),
    };
    let ahead = pick & 8 != 0;
    let sizes = (1 + usize::from(pick) * 4, budget);
    let (held, h) = replay_held_as(&img, records, to, sizes, ahead).unwrap_or_else(|e| {
        panic!("read twice accepted, read once (budget {budget}, ahead {ahead}) refused: {e}")
    });
    assert_eq!(&contents(&held), small, "held: other data");
    assert_eq!(h.replay.stats, r.replay.stats, "held: other stats");
    assert_eq!(h.checked, r.checked, "held: other live hashes proven");
    assert_eq!(h.hashkv, r.hashkv, "held: another hashkv");
}

/// See the module docs. One input in four is also replayed in small transactions (a chunk
/// size from the input): accepted or refused alike, and the same data when accepted.
/// Returns whether the replay was accepted.
pub fn exercise(data: &[u8]) -> bool {
    let (img, records, to) = decode(data);
    let whole = replay(&img, &records, to);
    // One input in four is also replayed in small transactions (their commits are most of
    // the cost, so not every input pays for them).
    let b = data.get(1).copied().unwrap_or(0);
    let chunk = (b % 4 == 0).then(|| 1 + usize::from(b / 4 % 64) * 16);
    let chunked = chunk.map(|c| replay_chunked(img, &records, to, c));
    let Ok((out, r)) = whole else {
        assert!(
            chunked.flatten().is_none(),
            "refused whole, accepted in chunks of {chunk:?}"
        );
        return false;
    };
    exercise_compacted(img, &records, to, &out, &r, b);
    let c = check(&out, &CheckOptions::default(), &mut Nothing);
    assert!(c.ok(), "replay broke a good database: {:?}", c.problems);
    if let Some(chunked) = chunked {
        let (small, rc) = chunked.expect("accepted whole, refused in chunks");
        let c = check(&small, &CheckOptions::default(), &mut Nothing);
        assert!(
            c.ok(),
            "chunked replay broke a good database: {:?}",
            c.problems
        );
        assert_eq!(
            contents(&out),
            contents(&small),
            "chunks of {chunk:?} wrote other data"
        );
        assert_eq!((r.hashkv, &r.checked), (rc.hashkv, &rc.checked));
    }
    let db = Db::open(&out[..]).expect("replayed database opens");
    let last = last_revision(&db).expect("replayed database has a revision");
    assert_eq!(last, to, "replayed database ends at {last}, not {to}");
    match replay(&out, &records, to) {
        Ok((_, again)) => assert!(
            again.replay.stats.puts + again.replay.stats.deletes == 0,
            "a second replay of the same changes was accepted"
        ),
        Err(e) => assert_ne!(e.exit_code() as i32, 1, "{e}"),
    }
    true
}

#[cfg(test)]
mod tests {
    /// The oracle over pseudo-random streams (the fuzz target runs it over many more).
    #[test]
    fn pseudo_random_streams() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut accepted = 0;
        for n in 0..400usize {
            let data: Vec<u8> = (0..(n % 90))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            accepted += usize::from(super::exercise(&data));
        }
        // Enough streams get through for the oracle to mean something.
        assert!(accepted >= 40, "{accepted} of 400 replays accepted");
    }

    /// The compacted replay's oracle over long valid streams: a few keys written many
    /// times (puts, deletes, several changes in one revision, leased keys), so most
    /// changes are compacted away, onto each base, with live hashes at every kind of
    /// revision and compaction.
    #[test]
    fn compacted_streams() {
        use super::{KeyValue, Record};
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut away = 0;
        for img in super::bases() {
            let db = super::Db::open(&img[..]).unwrap();
            let base = super::last_revision(&db).unwrap();
            for len in [1i64, 2, 7, 40, 150] {
                let mut records = Vec::new();
                let mut created = std::collections::HashMap::new();
                for rev in base + 1..=base + len {
                    let ops = 1 + rnd(3);
                    let first = rnd(6);
                    for i in 0..ops {
                        let key = format!("/c/{}", (first + i) % 6).into_bytes();
                        if rnd(4) == 0 {
                            created.remove(&key);
                            records.push(Record::Delete { key, revision: rev });
                        } else {
                            let (c, v) = created.get(&key).copied().unwrap_or((rev, 0));
                            created.insert(key.clone(), (c, v + 1));
                            records.push(Record::Put(KeyValue {
                                key,
                                create_revision: c,
                                mod_revision: rev,
                                version: v + 1,
                                value: vec![b'v'; rnd(50) as usize],
                                lease: 0,
                            }));
                        }
                    }
                }
                let to = base + len;
                let (out, whole) = super::replay(img, &records, to).expect("a valid stream");
                for pick in [0u8, 1, 2, 5, 17, 100, 254, 255] {
                    super::exercise_compacted(img, &records, to, &out, &whole, pick);
                }
                let (_, r) = super::replay_compacted(img, &records, to, 1 << 20).unwrap();
                away += r.replay.stats.compacted_away;
            }
        }
        assert!(away > 200, "{away} changes compacted away");
    }
}
