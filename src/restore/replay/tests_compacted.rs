//! Replays that compact their window: kept transactions, the survey's check, the proof
//! where no key was live, and a held replay fed before its database is at hand.

use super::tests::{base, del, put, stream};
use super::*;
use crate::format::etcd::hashkv::hashkv;

/// The transactions a replay keeps, decoded and committed onto the same base, write the
/// same image byte for byte (what `restore apply` does with a compacted plan's
/// `replay.edits`), read once or twice; kept transactions that outgrow their cap are
/// dropped whole.
#[test]
fn kept_transactions_commit_the_same_image() {
    use crate::format::bolt::write::log;
    let img = base(300);
    for (budget, chunk) in [(1 << 20, 40), (1 << 20, 1 << 20), (1, 40)] {
        let mut out = img.clone();
        let mut rep = Replaying::holding(&mut out, 306, chunk, budget, true).unwrap();
        rep.keep_edits(1 << 20);
        let read = stream().iter().try_for_each(|r| rep.feed(r));
        let done = if rep.outgrown() {
            let img2 = rep.into_image();
            let mut survey = Survey::new(306);
            stream().iter().for_each(|r| survey.feed(r));
            let mut rep = Replaying::compacting(img2, 306, chunk, survey, true).unwrap();
            rep.keep_edits(1 << 20);
            for rec in stream() {
                rep.feed(&rec).unwrap();
            }
            rep.finish().unwrap()
        } else {
            read.unwrap();
            match rep.settle().unwrap() {
                Settled::Ready(r) => r.finish().unwrap(),
                Settled::ReadAgain(..) => panic!("no live hash to read again for"),
            }
        };
        let kept = done.edits.expect("kept").into_bytes();
        let txns = log::decode(&kept).unwrap();
        assert_eq!(
            txns.len() as u32,
            done.commits,
            "budget {budget} chunk {chunk}"
        );
        let mut again = img.clone();
        commit_kept(&mut again, &txns).unwrap();
        assert!(again == out, "budget {budget} chunk {chunk}: another image");
    }
    // A cap the transactions outgrow: nothing kept.
    let mut out = img.clone();
    let mut rep = Replaying::new(&mut out, 306, 40).unwrap();
    rep.keep_edits(64);
    for rec in stream() {
        rep.feed(&rec).unwrap();
    }
    assert!(rep.finish().unwrap().edits.is_none());
}

#[test]
fn a_compacted_replay_refuses_records_its_survey_did_not_see() {
    let img = base(300);
    let records = stream();
    // The survey's read saw another key at revision 303 than the replay's read.
    let mut seen = records.clone();
    if let Record::Put(kv) = &mut seen[1] {
        kv.key = b"/k/000009".to_vec();
    }
    let mut survey = Survey::new(306);
    seen.iter().for_each(|r| survey.feed(r));
    let mut out = img.clone();
    let mut rep = Replaying::compacting(&mut out, 306, CHUNK_BYTES, survey, true).unwrap();
    for r in &records {
        rep.feed(r).unwrap();
    }
    let e = rep.finish().unwrap_err();
    assert_eq!(e.exit_code() as i32, 3, "{e}");
    assert!(e.to_string().contains("read twice"), "{e}");
    // The same survey of the same records is accepted.
    let (_, r) = replay_compacted(&img, &records, 306, 64).unwrap();
    assert_eq!(r.replay.stats.compact_revision, Some(305));
}

/// A live hash made where no key was live, with a compaction inside the window: the whole
/// replay proves the hash etcd gave once that compaction had run; a compacted replay
/// (which reads the window in order) cannot tell it and leaves it unproven, not refused,
/// while it proves the hash etcd gives before the compaction has run.
#[test]
fn a_hash_where_no_key_was_live_is_proven_whole_and_left_unproven_compacted() {
    let img = base(0);
    let hash = |hash: u32| Record::LiveHash {
        revision: 3,
        hash,
        compact_revision: 2,
    };
    let mut records = vec![
        put("/a", 1, 1, 1, 0),
        put("/a", 2, 1, 2, 0),
        del("/a", 3),
        Record::Compact {
            compact_revision: 2,
            revision: 3,
        },
        hash(0),
        put("/b", 4, 4, 1, 0),
    ];
    let without: Vec<Record> = records
        .iter()
        .filter(|r| !matches!(r, Record::LiveHash { .. }))
        .cloned()
        .collect();
    let (out, _) = replay(&img, &without, 4).unwrap();
    let db = Db::open(&out[..]).unwrap();
    let a = hashkv(&db, 3, Some(2)).unwrap().unwrap().1.answers();
    let (settled, as_is) = (a.settled.unwrap(), a.as_is);
    assert_ne!(settled, as_is, "/a@1 is gone once compacted at 2");
    records[4] = hash(settled);
    let (_, whole) = replay(&img, &records, 4).unwrap();
    assert!(whole.checked.contains(&3), "{:?}", whole.checked);
    let (_, r) = replay_compacted(&img, &records, 4, 64).unwrap();
    assert_eq!(r.replay.on_records, Some(Concluded::Unknowable(3)));
    assert!(!r.checked.contains(&3), "{:?}", r.checked);
    records[4] = hash(as_is);
    let (_, r) = replay_compacted(&img, &records, 4, 64).unwrap();
    assert_eq!(r.replay.on_records, Some(Concluded::Proven(3)));
    assert!(r.checked.contains(&3));
    records[4] = hash(settled ^ 1);
    assert_eq!(replay(&img, &records, 4).unwrap_err().exit_code() as i32, 3);
}

/// A held replay fed before its database was at hand (`restore plan --compact` reads the
/// window while the backup is verified) and resumed onto it writes what a held replay
/// onto that database writes: the database's own lease revoked and a new one granted on
/// the way. Onto a database at another revision it does not resume.
#[test]
fn a_replay_fed_before_its_base_resumes_onto_it() {
    let prefix = [
        put("/new/a", 302, 302, 1, 0),
        Record::LeaseGrant {
            id: 0x55,
            ttl: 60,
            revision: 302,
        },
        put("/leased", 303, 303, 1, 0x55),
    ];
    let (based, _) = replay(&base(300), &prefix, 303).unwrap();
    let window = [
        Record::LeaseRevoke {
            id: 0x55,
            revision: 304,
        },
        del("/leased", 304),
        Record::LeaseGrant {
            id: 0x66,
            ttl: 30,
            revision: 304,
        },
        put("/x", 305, 305, 1, 0x66),
        put("/new/a", 306, 302, 2, 0),
    ];
    let (want, r) = replay_held(&based, &window, 306, 1 << 20, 1 << 20).unwrap();
    let ahead = || {
        let mut rp = Replayer::before_base(303, 306).unwrap();
        rp.holding(1 << 20, true);
        window.iter().for_each(|rec| rp.feed(rec).unwrap());
        rp
    };
    let mut out = based.clone();
    let rep = Replaying::resume(&mut out, ahead(), 1 << 20).unwrap();
    let Ok(rep) = rep else { panic!("not resumed") };
    let done = match rep.settle().unwrap() {
        Settled::Ready(r) => r.finish().unwrap(),
        Settled::ReadAgain(..) => panic!("no live hash to read again for"),
    };
    assert_eq!((done.hashkv, done.replay.stats), (r.hashkv, r.replay.stats));
    assert!(out == want, "another image");
    let db = Db::open(&out[..]).unwrap();
    let lease = db.bucket(b"lease").unwrap().unwrap();
    assert_eq!(lease.get(&0x55i64.to_be_bytes()).unwrap(), None);
    assert_eq!(
        lease.get(&0x66i64.to_be_bytes()).unwrap(),
        Some(encode_lease(0x66, 30))
    );
    // The backup's own database at 301, not the 303 the window was read after.
    let mut other = base(300);
    let rep = Replaying::resume(&mut other, ahead(), 1 << 20).unwrap();
    assert!(rep.is_err(), "resumed onto another revision");
    assert!(other == base(300), "written to");
}
