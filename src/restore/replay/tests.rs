use super::*;
use crate::format::bolt::build::etcd_like;
use crate::format::bolt::write::cow_patch;
use crate::format::bolt::{check, CheckOptions, EntryVisitor};
use crate::format::capture::KeyValue;
use crate::format::etcd::hashkv::hashkv;
use crate::format::etcd::KeyValueRef;

struct Nothing;
impl EntryVisitor for Nothing {}

/// etcd_like(n): keys /k/000000.. at revisions 2..=n+1, so the backup is at n+1.
pub(super) fn base(n: usize) -> Vec<u8> {
    etcd_like(4096, n, 40)
}

pub(super) fn put(key: &str, rev: i64, create: i64, version: i64, lease: i64) -> Record {
    Record::Put(KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: rev,
        version,
        value: format!("v@{rev}").into_bytes(),
        lease,
    })
}

pub(super) fn del(key: &str, rev: i64) -> Record {
    Record::Delete {
        key: key.as_bytes().to_vec(),
        revision: rev,
    }
}

/// A workload after revision 301: a put, a transaction of three changes in one revision,
/// a lease with a key, its revoke deleting it, and a compaction.
pub(super) fn stream() -> Vec<Record> {
    vec![
        put("/new/a", 302, 302, 1, 0),
        put("/k/000001", 303, 3, 2, 0),
        del("/k/000002", 303),
        put("/new/b", 303, 303, 1, 0),
        Record::LeaseGrant {
            id: 0x55,
            ttl: 60,
            revision: 303,
        },
        put("/leased", 304, 304, 1, 0x55),
        Record::Clock {
            revision: 304,
            unix_ms: 1_000,
        },
        Record::LeaseRevoke {
            id: 0x55,
            revision: 305,
        },
        del("/leased", 305),
        Record::Compact {
            compact_revision: 303,
            revision: 305,
        },
        put("/new/a", 306, 302, 2, 0),
    ]
}

fn applied(img: &[u8], patch: &crate::format::bolt::write::Patch) -> Vec<u8> {
    let mut out = img.to_vec();
    patch.apply_to(&mut out);
    out
}

fn spec(bump: Option<u64>) -> crate::restore::native::RestoreSpec {
    use crate::restore::native::{MemberSpec, RestoreSpec};
    RestoreSpec {
        members: vec![MemberSpec {
            name: "a".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
        }],
        token: "t".into(),
        bump_revision: bump,
        mark_compacted: bump.is_some(),
    }
}

#[test]
fn encodings_are_etcds() {
    // A tombstone's value as etcd writes it (format::etcd::proto's vector).
    let tomb = encode_kv(&KeyValue {
        key: b"/vec/deleted".to_vec(),
        ..KeyValue::default()
    });
    assert_eq!(hex::encode(&tomb), "0a0c2f7665632f64656c65746564");
    let kv = KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 1,
        value: b"xy".to_vec(),
        lease: 7,
    };
    assert_eq!(
        encode_kv(&kv),
        [0x0a, 1, b'a', 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, 2, b'x', b'y', 0x30, 7]
    );
    // The lease vector of format::etcd::proto: lease 4660, TTL 3600.
    assert_eq!(
        encode_lease(4660, 3600),
        [0x08, 0xb4, 0x24, 0x10, 0x90, 0x1c]
    );
}

#[test]
fn replay_writes_what_etcd_writes() {
    let img = base(300);
    let (out, r) = replay(&img, &stream(), 306).unwrap();
    assert_eq!(r.replay.base_revision, 301);
    assert_eq!(
        r.replay.stats,
        ReplayStats {
            revisions: 5,
            puts: 5,
            deletes: 2,
            lease_grants: 1,
            lease_revokes: 1,
            compact_revision: Some(303),
            compacted_away: 0,
        }
    );
    // Appended along the rightmost path: a few pages, not the 300 keys' pages.
    let pages = (out.len() - img.len()) / 4096;
    assert!(pages <= 8, "{pages} new pages");
    assert_eq!(r.commits, 1);
    let c = check(&out, &CheckOptions::default(), &mut Nothing);
    assert!(c.ok(), "{:?}", c.problems);
    let db = Db::open(&out[..]).unwrap();
    let key = db.bucket(b"key").unwrap().unwrap();
    // The transaction's three changes at 303, sub revisions 0, 1, 2; the delete a tombstone.
    let v = key.get(&rev_key(303, 1, true)).unwrap().unwrap();
    assert_eq!(KeyValueRef::decode(&v).unwrap().key, b"/k/000002");
    let v = key.get(&rev_key(303, 2, false)).unwrap().unwrap();
    let kv = KeyValueRef::decode(&v).unwrap();
    assert_eq!(
        (kv.key, kv.create_revision, kv.version),
        (&b"/new/b"[..], 303, 1)
    );
    let v = key.get(&rev_key(304, 0, false)).unwrap().unwrap();
    assert_eq!(KeyValueRef::decode(&v).unwrap().lease, 0x55);
    // Granted, then revoked by 305: bucket lease is empty again.
    let lease = db.bucket(b"lease").unwrap().unwrap();
    assert!(lease.cursor().next().unwrap().is_none());
    let m = meta_fields(&db).unwrap();
    assert_eq!(m.scheduled_compact, Some(303));
    assert_eq!(m.finished_compact, None);
    // The hash at 306 is the one the replayed db has.
    let (h, _) = hashkv(&db, 306, None).unwrap().unwrap();
    assert_eq!(r.hashkv, Some(h));
}

#[test]
fn stops_at_the_revision_and_keeps_the_lease_granted_by_then() {
    let img = base(300);
    let (out, r) = replay(&img, &stream(), 304).unwrap();
    assert_eq!(r.replay.stats.compact_revision, None);
    let db = Db::open(&out[..]).unwrap();
    assert_eq!(last_revision(&db).unwrap(), 304);
    let lease = db.bucket(b"lease").unwrap().unwrap();
    assert_eq!(
        lease.get(&0x55i64.to_be_bytes()).unwrap(),
        Some(encode_lease(0x55, 60))
    );
    // No change: the backup itself.
    let (out, r) = replay(&img, &stream(), 301).unwrap();
    assert_eq!((r.commits, out == img), (0, true));
}

#[test]
fn live_hashes_are_checked() {
    let img = base(300);
    let (_, r) = replay(&img, &stream(), 304).unwrap();
    let good = r.hashkv.unwrap();
    let mut recs = stream();
    recs.insert(
        6,
        Record::LiveHash {
            revision: 304,
            hash: good,
            compact_revision: -1,
        },
    );
    let (_, r) = replay(&img, &recs, 306).unwrap();
    assert_eq!(r.checked, vec![304]);
    recs[6] = Record::LiveHash {
        revision: 304,
        hash: good ^ 1,
        compact_revision: -1,
    };
    let e = replay(&img, &recs, 306).unwrap_err();
    assert_eq!(e.exit_code() as i32, 3);
    assert!(e.to_string().contains("revision 304"), "{e}");
}

#[test]
fn refusals_name_the_revision() {
    let img = base(300);
    // Beyond the last change.
    let e = replay(&img, &stream(), 307).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2);
    assert!(e.to_string().contains("revision 306 at most"), "{e}");
    // Before the backup.
    let e = replay(&img, &stream(), 300).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2);
    // A gap: revision 303 missing.
    let recs: Vec<Record> = stream()
        .into_iter()
        .filter(|r| !matches!(r, Record::Put(_) | Record::Delete { .. }) || r.revision() != 303)
        .collect();
    let e = replay(&img, &recs, 306).unwrap_err();
    assert_eq!(e.exit_code() as i32, 3);
    assert!(e.to_string().contains("revision 303"), "{e}");
    // Out of order.
    let mut recs = stream();
    recs.swap(0, 1);
    let e = replay(&img, &recs, 306).unwrap_err();
    assert_eq!(e.exit_code() as i32, 3);
    // A put etcd cannot have written.
    let recs = vec![put("/x", 302, 303, 1, 0)];
    assert_eq!(replay(&img, &recs, 302).unwrap_err().exit_code() as i32, 3);
}

#[test]
fn a_second_replay_of_the_same_stream_is_refused() {
    let img = base(300);
    let (out, _) = replay(&img, &stream(), 306).unwrap();
    let e = replay(&out, &stream(), 306).unwrap_err();
    assert!(
        e.to_string()
            .contains("at or before the backup's revision 306"),
        "{e}"
    );
}

#[test]
fn native_restore_of_the_replayed_image() {
    use crate::restore::native::restore_patch;
    let img = base(300);
    let (out, r) = replay(&img, &stream(), 306).unwrap();
    let p = restore_patch(&out, &spec(None)).unwrap();
    let restored = applied(&out, &p);
    let db = Db::open(&restored[..]).unwrap();
    let m = meta_fields(&db).unwrap();
    assert_eq!(
        (m.scheduled_compact, m.consistent_index, m.term),
        (Some(303), 1, 1)
    );
    assert_eq!(last_revision(&db).unwrap(), 306);
    let pred = crate::restore::predict::predict(&out, &spec(None), "t").unwrap();
    assert_eq!((pred.revision, Some(pred.hashkv)), (306, r.hashkv));
}

/// A window committed one record at a time (a lease granted in one transaction and used in
/// the next, a compaction, a revision split across transactions) writes the same data as
/// one transaction, and the same into a temporary file as in memory.
#[test]
fn transactions_of_any_size_write_the_same_data() {
    let img = base(300);
    let (whole, r) = replay(&img, &stream(), 306).unwrap();
    for chunk in [1, 40, 200] {
        let mut out = img.clone();
        let mut rep = Replaying::new(&mut out, 306, chunk).unwrap();
        for rec in stream() {
            rep.feed(&rec).unwrap();
        }
        let done = rep.finish().unwrap();
        assert!(done.commits > 1, "chunk {chunk}: {} commits", done.commits);
        assert_eq!((done.hashkv, done.replay.stats), (r.hashkv, r.replay.stats));
        let c = check(&out, &CheckOptions::default(), &mut Nothing);
        assert!(c.ok(), "{:?}", c.problems);
        let entries = |img: &[u8]| {
            let db = Db::open(img).unwrap();
            let mut v = Vec::new();
            for b in [&b"key"[..], b"lease", b"meta"] {
                let mut c = db.bucket(b).unwrap().unwrap().cursor();
                while let Some(e) = c.next().unwrap() {
                    v.push((e.key.to_vec(), e.value.to_vec()));
                }
            }
            v
        };
        assert_eq!(entries(&out), entries(&whole), "chunk {chunk}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut file = FileImage::copy_of(dir.path(), &img, None).unwrap();
    let mut rep = Replaying::new(&mut file, 306, 100).unwrap();
    for rec in stream() {
        rep.feed(&rec).unwrap();
    }
    assert_eq!(rep.finish().unwrap().hashkv, r.hashkv);
    let mut read = vec![0u8; file.size() as usize];
    file.read_exact_at(0, &mut read).unwrap();
    let db = Db::open(&read[..]).unwrap();
    assert_eq!(last_revision(&db).unwrap(), 306);
    // A copy that is not the database the plan names is refused, naming the object.
    let e = FileImage::copy_of(dir.path(), &img, Some(([7u8; 32], "backup b1")))
        .err()
        .unwrap();
    assert_eq!(e.exit_code() as i32, 3);
    assert!(e.to_string().contains("backup b1"), "{e}");
    // Nothing left behind: the copies are unlinked files.
    drop(file);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The replay's cost is the events, not the database: the same events add the same pages
/// to a 2,000-key and a 50,000-key base (4 pages for 10 puts, 17 to 18 for 1,000 measured).
#[test]
fn pages_written_do_not_grow_with_the_base() {
    let pages = |n: usize, events: i64| {
        let img = etcd_like(4096, n, 100);
        let base = n as i64 + 1;
        let recs: Vec<Record> = (1..=events)
            .map(|i| put(&format!("/m/{i}"), base + i, base + i, 1, 0))
            .collect();
        let db = Db::open(&img[..]).unwrap();
        let r = replay_edits(&db, &recs, base + events).unwrap();
        cow_patch(&db, &r.edits).unwrap().pages.1.len() / 4096
    };
    for events in [10, 1000] {
        let (small, large) = (pages(2_000, events), pages(50_000, events));
        assert!(
            large <= small + 2,
            "{events} events: {small} pages on 2k keys, {large} on 50k"
        );
    }
    assert!(pages(50_000, 10) <= 6);
}

/// With a revision bump, the bump starts from the replayed revision, not the backup's.
#[test]
fn a_bump_counts_from_the_replayed_revision() {
    use crate::restore::native::restore_patch;
    let img = base(300);
    let (out, _) = replay(&img, &stream(), 306).unwrap();
    let p = restore_patch(&out, &spec(Some(1000))).unwrap();
    let restored = applied(&out, &p);
    let db = Db::open(&restored[..]).unwrap();
    assert_eq!(last_revision(&db).unwrap(), 1306);
    // The bump's compaction mark wins over the replayed one (it is newer).
    assert_eq!(meta_fields(&db).unwrap().scheduled_compact, Some(1306));
}

/// Where the replayed copy cannot be made (no such directory here; a full disk the same
/// way), one error names the directory and says what to do.
#[test]
fn a_copy_that_cannot_be_made_names_its_directory() {
    let img = base(10);
    let dir = std::path::Path::new("/nonexistent/lifeboat-replay");
    let e = FileImage::copy_of(dir, &img, None).err().unwrap();
    let s = e.to_string();
    assert!(
        s.contains("/nonexistent/lifeboat-replay") && s.contains("restore elsewhere"),
        "{s}"
    );
}

/// The proof made on the prediction's walk (`restore plan`, `restore test`: one read of
/// the replayed database) is the proof of its own walk: the same hash at the target, the
/// same live hashes checked, a wrong live hash refused the same way; with a bump too (its
/// entry is beyond every hashed revision).
#[test]
fn the_proof_on_the_prediction_walk_is_the_proof() {
    use crate::restore::predict::{predict, predict_visiting};
    let img = base(300);
    let (_, r) = replay(&img, &stream(), 304).unwrap();
    let mut recs = stream();
    recs.insert(
        6,
        Record::LiveHash {
            revision: 304,
            hash: r.hashkv.unwrap(),
            compact_revision: -1,
        },
    );
    for bump in [None, Some(1000)] {
        let (own_img, own) = replay(&img, &recs, 306).unwrap();
        let mut walked_img = img.clone();
        let mut rep = Replaying::new(&mut walked_img, 306, CHUNK_BYTES).unwrap();
        for x in &recs {
            rep.feed(x).unwrap();
        }
        let (walked, p) = rep
            .finish_walking(|i, proof| predict_visiting(i, &spec(bump), "t", proof, None))
            .unwrap();
        assert!(walked_img == own_img, "the same replay wrote other bytes");
        assert_eq!((walked.hashkv, &walked.checked), (None, &own.checked));
        assert_eq!(walked.checked, vec![304]);
        if bump.is_none() {
            assert_eq!(Some(p.hashkv), own.hashkv);
        }
        let alone = predict(&own_img, &spec(bump), "t").unwrap();
        assert_eq!(
            (p.revision, p.hashkv, p.keys),
            (alone.revision, alone.hashkv, alone.keys)
        );
    }
    recs[6] = Record::LiveHash {
        revision: 304,
        hash: r.hashkv.unwrap() ^ 1,
        compact_revision: -1,
    };
    let mut bad = img.clone();
    let mut rep = Replaying::new(&mut bad, 306, CHUNK_BYTES).unwrap();
    for x in &recs {
        rep.feed(x).unwrap();
    }
    let e = rep
        .finish_walking(|i, proof| predict_visiting(i, &spec(None), "t", proof, None))
        .unwrap_err();
    assert_eq!(e.exit_code() as i32, 3);
    assert!(e.to_string().contains("revision 304"), "{e}");
}
