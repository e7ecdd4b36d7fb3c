//! Fuzzing oracle for the replay writer (`fuzz/fuzz_targets/pitr_replay.rs`, and a unit
//! test over pseudo-random inputs): a record stream decoded from arbitrary bytes is
//! replayed onto a small good database. It must never panic; when the replay is accepted,
//! the patched image must pass the strict check, end at the target revision and hash; a
//! second replay of the same stream onto the result must be refused (its changes are at or
//! before the new database's revision) or be empty. Panics (a finding) otherwise.
//! Test-only (feature `testkit`).

use std::sync::OnceLock;

use super::{replay, KeyValue, Record, Replayed, Replaying};
use crate::format::bolt::build::etcd_like;
use crate::format::bolt::{check, CheckOptions, Db, EntryVisitor};
use crate::format::etcd::last_revision;

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
fn contents(img: &[u8]) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
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
}
