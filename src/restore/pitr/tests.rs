use super::*;
use crate::format::capture::KeyValue;

const GOLDEN: &str =
    include_str!("../../../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");
const GOLDEN_NAME: &str = "20261129T053645.864Z-650b5d21591bfd0.manifest.json";

/// Backups at these (revision, created_at).
fn backups(at: &[(i64, &str)]) -> Vec<Manifest> {
    let base = Manifest::from_json(GOLDEN.as_bytes(), GOLDEN_NAME).unwrap();
    at.iter()
        .map(|(rev, t)| {
            let mut m = base.clone();
            m.revision = *rev;
            m.created_at = t.to_string();
            m
        })
        .collect()
}

fn put(rev: i64) -> Record {
    Record::Put(KeyValue {
        key: format!("/k{rev}").into_bytes(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: b"v".to_vec(),
        lease: 0,
    })
}

/// Records of revisions 11..=30 except the gap 21..=24, clock marks every 5 revisions
/// (revision r at r seconds after 2026-12-06T00:00:00Z).
struct Fake(Vec<Record>);

impl Fake {
    fn new() -> Fake {
        let t0 = 1_796_515_200_000i64; // 2026-12-06T00:00:00Z
        let mut v = Vec::new();
        for r in (11..=30).filter(|r| !(21..=24).contains(r)) {
            v.push(put(r));
            if r % 5 == 0 {
                v.push(Record::Clock {
                    revision: r,
                    unix_ms: t0 + r * 1000,
                });
            }
        }
        Fake(v)
    }
}

impl RecordSource for Fake {
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>> {
        Ok(self
            .0
            .iter()
            .filter(|r| r.revision() > after && r.revision() <= upto)
            .cloned()
            .collect())
    }
    fn last_revision(&self) -> Result<Option<i64>> {
        Ok(Some(30))
    }
}

fn two() -> Vec<Manifest> {
    backups(&[(10, "2026-12-06T00:00:10Z"), (25, "2026-12-06T00:00:25Z")])
}

/// The chosen window's records, read once through the scan.
fn window(c: &Chosen, src: &dyn RecordSource) -> Result<(Vec<Record>, Scanned)> {
    let mut v = Vec::new();
    let s = read_window(
        (c.manifest.revision, c.to_revision),
        &c.backups,
        src,
        &mut |r| {
            v.push(r.clone());
            Ok(())
        },
    )?;
    Ok((v, s))
}

#[test]
fn picks_the_newest_backup_at_or_below() {
    let c = choose(&two(), Target::Revision(18), &Fake::new()).unwrap();
    assert_eq!((c.manifest.revision, c.to_revision), (10, 18));
    let (records, scanned) = window(&c, &Fake::new()).unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| matches!(r, Record::Put(_)))
            .count(),
        8
    );
    assert_eq!(
        (scanned.records, scanned.sha256.clone()),
        (records.len() as u64, records_digest(&records))
    );
    let c = choose(&two(), Target::Revision(28), &Fake::new()).unwrap();
    assert_eq!(c.manifest.revision, 25);
    let (records, _) = window(&c, &Fake::new()).unwrap();
    assert!(records.iter().all(|r| r.revision() > 25));
    // Exactly a backup: nothing to replay.
    let c = choose(&two(), Target::Revision(25), &Fake::new()).unwrap();
    assert!(window(&c, &Fake::new()).unwrap().0.is_empty());
}

#[test]
fn refusals_name_the_nearest_revisions() {
    let e = choose(&two(), Target::Revision(5), &Fake::new()).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2);
    assert!(
        e.to_string()
            .contains("oldest revision that can be restored is 10"),
        "{e}"
    );
    // A gap is found when the window is read (plan time, before anything is written).
    let c = choose(&two(), Target::Revision(22), &Fake::new()).unwrap();
    let e = window(&c, &Fake::new()).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2);
    let s = e.to_string();
    assert!(s.contains("gap") && s.contains("21 to 24"), "{s}");
    assert!(
        s.contains("revision 20 at most") && s.contains("revisions 25 and later"),
        "{s}"
    );
    // Past the window's end, the first later change is asked of the source.
    let c = choose(&two(), Target::Revision(21), &Fake::new()).unwrap();
    let s = window(&c, &Fake::new()).unwrap_err().to_string();
    assert!(s.contains("revisions 25 and later"), "{s}");
    let e = choose(&two(), Target::Revision(31), &Fake::new()).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2);
    assert!(e.to_string().contains("revision 30 at most"), "{e}");
    assert!(Target::from_flags(Some(0), None).is_err());
    assert!(Target::from_flags(None, Some("yesterday")).is_err());
    assert!(choose(&[], Target::Revision(3), &Fake::new()).is_err());
}

#[test]
fn a_time_is_the_newest_clock_mark_at_or_before_it() {
    let t = |s: &str| Target::from_flags(None, Some(s)).unwrap().unwrap();
    let c = choose(&two(), t("2026-12-06T00:00:17Z"), &Fake::new()).unwrap();
    assert_eq!((c.manifest.revision, c.to_revision), (10, 15));
    assert_eq!(c.to_time.as_deref(), Some("2026-12-06T00:00:17Z"));
    let c = choose(&two(), t("2026-12-06T00:00:29.999Z"), &Fake::new()).unwrap();
    assert_eq!((c.manifest.revision, c.to_revision), (25, 25));
    let c = choose(&two(), t("2026-12-06T01:00:00Z"), &Fake::new()).unwrap();
    assert_eq!(c.to_revision, 30);
    let e = choose(&two(), t("2026-12-05T23:00:00Z"), &Fake::new()).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2);
    assert!(
        e.to_string().contains("before the oldest full backup"),
        "{e}"
    );
}

#[test]
fn the_digest_sees_every_field() {
    let a = Fake::new().0;
    let mut b = a.clone();
    if let Record::Put(kv) = &mut b[0] {
        kv.lease = 1;
    }
    assert_ne!(records_digest(&a), records_digest(&b));
    assert_eq!(records_digest(&a), records_digest(&a.clone()));
    assert_ne!(records_digest(&a), records_digest(&a[1..]));
}

/// A source that names its segments: `digest` for all of them, one per 5 revisions.
struct Segmented(Fake, u8);

impl RecordSource for Segmented {
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>> {
        self.0.load(after, upto)
    }
    fn stream_marked(
        &self,
        after: i64,
        upto: i64,
        f: &mut dyn FnMut(Record) -> Result<()>,
        seg: &mut dyn FnMut(&[u8; 32]),
    ) -> Result<()> {
        for r in self.load(after, upto)? {
            if r.revision() % 5 == 1 && matches!(r, Record::Put(_)) {
                seg(&[self.1; 32]);
            }
            f(r)?;
        }
        Ok(())
    }
    fn last_revision(&self) -> Result<Option<i64>> {
        Ok(Some(30))
    }
}

#[test]
fn two_reads_agree_by_segments_or_by_records() {
    let read = |src: &dyn RecordSource, d: Digests| {
        read_window_digesting((10, 20), d, &[], src, &mut |_| Ok(())).unwrap()
    };
    // Without segments, a read asked for segments digests the records all the same.
    let first = read(&Fake::new(), Digests::Records);
    let again = read(&Fake::new(), Digests::Segments);
    assert_eq!(
        (again.segments.as_ref(), &again.sha256),
        (None, &first.sha256)
    );
    assert!(again.same_as(&first));
    let mut changed = Fake::new();
    if let Record::Put(kv) = &mut changed.0[3] {
        kv.value = b"w".to_vec();
    }
    assert!(!read(&changed, Digests::Segments).same_as(&first));
    // With segments, the second read digests them only; other segments differ.
    let first = read(&Segmented(Fake::new(), 1), Digests::Records);
    let again = read(&Segmented(Fake::new(), 1), Digests::Segments);
    assert!(!first.sha256.is_empty() && again.sha256.is_empty());
    assert!(again.same_as(&first));
    assert!(!read(&Segmented(Fake::new(), 2), Digests::Segments).same_as(&first));
    // Nothing to compare is never the same.
    let none = Scanned {
        records: 0,
        sha256: String::new(),
        segments: None,
    };
    assert!(!none.same_as(&none.clone()));
}
