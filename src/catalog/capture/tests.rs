use std::io::Read;
use std::sync::Arc;

use super::*;
use crate::catalog::Keys;
use crate::format::capture::segment;
use crate::format::capture::{KeyValue, Record};
use crate::pipeline::encrypt;
use crate::store::local::LocalStore;

const CLUSTER: u64 = 0xcdf8_18b3_1d2a_5e11;

fn repo(dir: &std::path::Path, keys: Keys) -> Repository {
    let store = LocalStore::open(dir, false).unwrap();
    Repository::new(dir.display().to_string(), Arc::new(store), keys)
}

fn put(rev: i64) -> Record {
    Record::Put(KeyValue {
        key: format!("k{rev}").into_bytes(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: b"v".to_vec(),
        lease: 0,
    })
}

/// Stores segments covering the given ranges as one chain; returns their names.
fn chain(
    r: &Repository,
    ranges: &[(i64, i64, bool)],
    sealing: Option<&Sealing<'_>>,
) -> Vec<String> {
    let mut prev = [0u8; 32];
    let mut names = Vec::new();
    for &(first, last, gap) in ranges {
        let h = Header {
            cluster_id: CLUSTER,
            first,
            last,
            prev,
            gap,
        };
        let recs: Vec<Record> = (first..=last).map(put).collect();
        let b = segment::encode(&h, &recs).unwrap();
        prev = segment::decode(&b).unwrap().digest;
        names.push(
            store_segment(r.store(), &b, &h, 1_796_000_000_000 + last, sealing)
                .unwrap()
                .name,
        );
    }
    names
}

fn revs(recs: &[Record]) -> Vec<i64> {
    recs.iter().map(Record::revision).collect()
}

/// A header of this file's cluster, without the gap flag.
fn header(first: i64, last: i64, prev: [u8; 32]) -> Header {
    Header {
        cluster_id: CLUSTER,
        first,
        last,
        prev,
        gap: false,
    }
}

/// Reading `(after, upto]` is refused as a broken chain at segment `name` (exit 3).
fn assert_chain_broken(r: &Repository, after: i64, upto: i64, name: &str) {
    let e = load_records(r, &format!("{CLUSTER:x}"), after, upto).unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Integrity);
    assert!(
        e.to_string().contains(name) && e.to_string().contains("chain broken"),
        "{e}"
    );
}

#[test]
fn names_round_trip_and_others_are_ignored() {
    let h = Header {
        cluster_id: CLUSTER,
        first: 5,
        last: 9,
        prev: [0; 32],
        gap: false,
    };
    let n = segment_name(&h, 1_796_000_000_123, true);
    assert_eq!(
        n,
        "capture-cdf818b31d2a5e11-00000000000000000005-00000000000000000009-1796000000123.seg.age"
    );
    let p = parse_name(&n).unwrap();
    assert_eq!(
        (p.first, p.last, p.sealed_ms, p.encrypted),
        (5, 9, 1_796_000_000_123, true)
    );
    for bad in [
        "capture-x.seg",
        "capture-cdf818b31d2a5e11-00000000000000000009-00000000000000000005-1796000000123.seg",
        "capture-cdf818b31d2a5e11-00000000000000000005-00000000000000000009-1796000000123.seg.partial",
        "20261129T053645.864Z-650b5d21591bfd0.manifest.json",
    ] {
        assert!(parse_name(bad).is_none(), "{bad}");
    }
}

#[test]
fn load_records_returns_the_range_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), Keys::none());
    let names = chain(
        &r,
        &[(11, 20, false), (21, 25, false), (26, 40, false)],
        None,
    );
    let c = format!("{CLUSTER:x}");
    assert_eq!(
        revs(&load_records(&r, &c, 10, 40).unwrap()),
        (11..=40).collect::<Vec<_>>()
    );
    assert_eq!(
        revs(&load_records(&r, &c, 15, 22).unwrap()),
        (16..=22).collect::<Vec<_>>()
    );
    assert!(load_records(&r, &c, 30, 30).unwrap().is_empty());
    // Beyond the last durable revision: refused, naming it and the last segment.
    let e = load_records(&r, &c, 10, 41).unwrap_err().to_string();
    assert!(
        e.contains("beyond the last durable captured revision 40"),
        "{e}"
    );
    assert!(e.contains(&names[2]), "{e}");
    // Before the first segment: the gap and the nearest restorable revisions.
    let e = load_records(&r, &c, 5, 12).unwrap_err().to_string();
    assert!(
        e.contains("revisions 6..10") && e.contains("up to 5"),
        "{e}"
    );
    let w = capture_windows(r.store(), &[]).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].from_revision, w[0].to_revision, w[0].segments),
        (10, 40, 3)
    );
}

#[test]
fn gaps_and_broken_links_are_refused_naming_the_segment() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), Keys::none());
    let names = chain(&r, &[(11, 20, false), (31, 40, true)], None);
    let c = format!("{CLUSTER:x}");
    let e = load_records(&r, &c, 10, 35).unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Failed);
    let e = e.to_string();
    assert!(
        e.contains("revisions 21..30") && e.contains(&names[1]),
        "{e}"
    );
    assert!(e.contains("up to 20") && e.contains("from 31 on"), "{e}");
    // Past the gap, from a backup at 30, it restores.
    assert_eq!(revs(&load_records(&r, &c, 30, 40).unwrap()).len(), 10);
    let w = capture_windows(r.store(), &[]).unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].gap_after, Some([21, 30]));

    // A link to the wrong digest: an integrity error naming the segment.
    let d2 = tempfile::tempdir().unwrap();
    let r2 = repo(d2.path(), Keys::none());
    chain(&r2, &[(11, 20, false)], None);
    let h = header(21, 22, [9; 32]);
    let b = segment::encode(&h, &[put(21)]).unwrap();
    let n = store_segment(r2.store(), &b, &h, 1, None).unwrap().name;
    assert_chain_broken(&r2, 10, 22, &n);
}

/// A capture written by an older lifeboat (segment format 1, SHA-256 digests) continues in
/// format 2 (BLAKE3): the first new segment links to the old one's SHA-256, and the window
/// across the change reads, named by each segment's own digest. A link made with the other
/// kind of digest is broken.
#[test]
fn a_chain_continues_across_segment_versions() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), Keys::none());
    let c = format!("{CLUSTER:x}");
    let mut prev = [0u8; 32];
    for (first, last, version) in [(11, 20, 1), (21, 30, 1), (31, 40, 2), (41, 50, 2)] {
        let h = header(first, last, prev);
        let recs: Vec<Record> = (first..=last).map(put).collect();
        let b = segment::encode_as(version, &h, &recs).unwrap();
        let seg = segment::decode(&b).unwrap();
        assert_eq!(seg.version, version);
        prev = seg.digest;
        store_segment(r.store(), &b, &h, 1_796_000_000_000 + last, None).unwrap();
    }
    assert_eq!(
        revs(&load_records(&r, &c, 10, 50).unwrap()),
        (11..=50).collect::<Vec<_>>()
    );
    assert_eq!(
        revs(&load_records(&r, &c, 25, 35).unwrap()),
        (26..=35).collect::<Vec<_>>()
    );

    // The new segment after a format-1 one, linked by BLAKE3 of the old one's bytes.
    let d2 = tempfile::tempdir().unwrap();
    let r2 = repo(d2.path(), Keys::none());
    let h = header(11, 20, [0; 32]);
    let old = segment::encode_as(1, &h, &(11..=20).map(put).collect::<Vec<_>>()).unwrap();
    store_segment(r2.store(), &old, &h, 1, None).unwrap();
    let wrong = segment::digest(2, &old[..old.len() - segment::TRAILER_LEN]).unwrap();
    let h = header(21, 21, wrong);
    let b = segment::encode(&h, &[put(21)]).unwrap();
    let n = store_segment(r2.store(), &b, &h, 2, None).unwrap().name;
    assert_chain_broken(&r2, 10, 21, &n);
}

#[test]
fn damaged_objects_are_integrity_errors() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), Keys::none());
    let names = chain(&r, &[(11, 20, false)], None);
    let path = d.path().join(&names[0]);
    let mut b = std::fs::read(&path).unwrap();
    let n = b.len();
    b[n / 2] ^= 0xff;
    std::fs::write(&path, &b).unwrap();
    let e = load_records(&r, &format!("{CLUSTER:x}"), 10, 20).unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Integrity, "{e}");
    assert!(e.to_string().contains(&names[0]), "{e}");
}

#[test]
fn storing_twice_is_idempotent_and_encrypted_segments_need_keys() {
    let d = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let key_file = d.path().join("id.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key_file, format!("{}\n", id.to_string().expose_secret())).unwrap();
    }
    let store_dir = d.path().join("dest");
    std::fs::create_dir(&store_dir).unwrap();
    let recipient = encrypt::parse_recipient(&id.to_public().to_string()).unwrap();
    let enc = Encryption::new(vec![recipient]).unwrap();
    let rb = ReadBackKey::generate();
    let sealing = Sealing {
        encryption: &enc,
        read_back: &rb,
    };
    let r = repo(&store_dir, Keys::none());
    let names = chain(&r, &[(11, 20, false)], Some(&sealing));
    assert!(names[0].ends_with(".seg.age"));
    let c = format!("{CLUSTER:x}");
    // Told from the names, before anything is read (a plan keeps no decrypted copy then).
    assert!(any_encrypted(&r, &c, 10, 20).unwrap());
    assert!(!any_encrypted(&r, &c, 20, 30).unwrap());
    let plain_dir = d.path().join("plain");
    std::fs::create_dir(&plain_dir).unwrap();
    let plain = repo(&plain_dir, Keys::none());
    chain(&plain, &[(11, 20, false)], None);
    assert!(!any_encrypted(&plain, &c, 10, 20).unwrap());
    let e = load_records(&r, &c, 10, 20).unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{e}");
    let keys = Keys::new(Some(crate::pipeline::encrypt::IdentitySource {
        origin: "--identity".into(),
        path: key_file,
    }));
    let r = repo(&store_dir, keys);
    assert_eq!(load_records(&r, &c, 10, 20).unwrap().len(), 10);
    // Storing the same segment again succeeds and changes nothing.
    let again = chain(&r, &[(11, 20, false)], Some(&sealing));
    assert_eq!(again, names);
    assert_eq!(list_segments(r.store(), CLUSTER).unwrap().len(), 1);
    let (last, seg) = last_durable(&r, CLUSTER).unwrap().unwrap();
    assert_eq!((last.last, seg.records.len()), (20, 10));
}

/// A store that counts the objects its listings return.
struct Counting {
    inner: LocalStore,
    listed: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn take(&self) -> usize {
        self.listed.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
    fn count(
        &self,
        r: Result<Vec<crate::store::ObjectInfo>>,
    ) -> Result<Vec<crate::store::ObjectInfo>> {
        if let Ok(v) = &r {
            self.listed
                .fetch_add(v.len(), std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl Store for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self, name: &str) -> Result<Box<dyn crate::store::ObjectWriter>> {
        self.inner.create(name)
    }
    fn open(&self, name: &str) -> Result<Box<dyn crate::io::ReadAt>> {
        self.inner.open(name)
    }
    fn load(&self, name: &str, offset: u64, len: Option<u64>) -> Result<Box<dyn Read + Send>> {
        self.inner.load(name, offset, len)
    }
    fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectInfo>> {
        self.count(self.inner.list(prefix))
    }
    fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<crate::store::ObjectInfo>> {
        self.count(self.inner.list_after(prefix, after))
    }
    fn list_skipping(&self, skip: &str) -> Result<Vec<crate::store::ObjectInfo>> {
        self.count(self.inner.list_skipping(skip))
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.inner.remove(name)
    }
    fn lock(&self, wait: std::time::Duration) -> Result<Box<dyn crate::store::StoreLock>> {
        self.inner.lock(wait)
    }
    fn clean_partials(&self) -> Result<Vec<String>> {
        self.inner.clean_partials()
    }
}

/// 20,000 segment names (a busy cluster's 5.5 hours at flush 1s; lengths 1 to 17
/// revisions, a gap now and then, overlapping runs of a second capture, another cluster,
/// other objects): a lookup from revision R returns exactly the segments a full listing
/// gives from the one before R on, and lists only those names (plus the block of names the
/// segment before R begins in), never the history before it.
#[test]
fn a_lookup_from_a_revision_lists_only_the_segments_from_there() {
    let d = tempfile::tempdir().unwrap();
    let mut first = 1i64;
    let mut ranges = Vec::new();
    for i in 0..20_000i64 {
        let len = 1 + (i * 7919) % 17;
        if i % 1_500 == 999 {
            first += 40; // a gap
        }
        ranges.push((first, first + len - 1));
        first += len;
    }
    // A second capture wrote the same revisions twice for a while (names differ by time).
    let twice = ranges[5_000..5_010].to_vec();
    ranges.extend(twice);
    let name = |(f, l): (i64, i64), ms: i64| {
        let h = Header {
            cluster_id: CLUSTER,
            first: f,
            last: l,
            prev: [0; 32],
            gap: false,
        };
        segment_name(&h, ms, false)
    };
    for (i, r) in ranges.iter().enumerate() {
        std::fs::write(d.path().join(name(*r, 1_796_000_000_000 + i as i64)), b"").unwrap();
    }
    let other = Header {
        cluster_id: CLUSTER + 1,
        first: 5,
        last: 9,
        prev: [0; 32],
        gap: false,
    };
    std::fs::write(d.path().join(segment_name(&other, 1, false)), b"").unwrap();
    std::fs::write(d.path().join("manifest-x.json"), b"{}").unwrap();
    let store = Counting {
        inner: LocalStore::open(d.path(), false).unwrap(),
        listed: Default::default(),
    };
    let all = list_segments(&store, CLUSTER).unwrap();
    assert_eq!(store.take(), ranges.len());
    // The backup catalog beside them lists none of them.
    let (backups, bad) = crate::catalog::list(&store).unwrap();
    assert!(backups.is_empty() && bad.is_empty());
    assert_eq!(store.take(), 1, "only manifest-x.json");
    let newest = all.last().unwrap().last;
    let mut probes = vec![1, 2, newest, newest + 1, newest + 1_000_000];
    for &(f, l) in ranges.iter().step_by(3_001) {
        probes.extend([f, f + 1, l, l + 1, (f + l) / 2]);
    }
    for (i, &(f, _)) in ranges.iter().enumerate() {
        if i % 4_500 == 999 {
            probes.extend([f - 1, f - 20, f - 40]); // in a gap
        }
    }
    probes.extend([ranges[5_003].0, ranges[5_003].0 + 1]); // overlapping runs
    for rev in probes {
        let got = segments_from(&store, CLUSTER, rev).unwrap();
        let listed = store.take();
        let before = all.iter().rposition(|s| s.first < rev);
        let start = match before {
            Some(b) if !all.iter().any(|s| s.first == rev) => b,
            _ => all.iter().position(|s| s.first >= rev).unwrap_or(all.len()),
        };
        assert_eq!(got, all[start..], "from revision {rev}");
        assert_eq!(got.last(), all.last(), "from revision {rev}");
        // What was listed: the names from R on, and the block of names (1,000 revisions,
        // 10,000 when R is early in one) that the segment before R begins in, when it
        // begins at most 100 revisions before R (the farther, the bigger the block).
        let from_r = all.iter().filter(|s| s.first >= rev).count();
        let near = before.is_some_and(|b| rev - all[b].first <= 100);
        if rev > 20_000 && near {
            assert!(
                listed <= from_r + 1_500,
                "from revision {rev}: listed {listed} names for {} segments",
                got.len()
            );
        }
    }
    // Near the newest revision (what a restore from today's backup asks): a few names.
    let got = segments_from(&store, CLUSTER, newest - 5).unwrap();
    assert!(got.len() <= 7, "{got:?}");
    assert!(store.take() < 200);
    assert_eq!(
        last_revision_from(
            &Repository::new(
                d.path().display().to_string(),
                Arc::new(LocalStore::open(d.path(), false).unwrap()),
                Keys::none()
            ),
            &format!("{CLUSTER:x}"),
            newest / 2
        )
        .unwrap(),
        Some(newest)
    );
}
