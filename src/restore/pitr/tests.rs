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

/// [`Fake`] with segment names: each segment ends with its clock mark (revisions 15, 20,
/// 25, 30), and its name says when it was sealed (`lie`: the name of the segment ending
/// at that revision says this time instead). Every range read is kept.
struct Timed {
    fake: Fake,
    lie: Option<(i64, i64)>,
    reads: std::cell::RefCell<Vec<(i64, i64)>>,
}

impl Timed {
    fn new(lie: Option<(i64, i64)>) -> Timed {
        Timed {
            fake: Fake::new(),
            lie,
            reads: Default::default(),
        }
    }
}

impl RecordSource for Timed {
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>> {
        self.reads.borrow_mut().push((after, upto));
        self.fake.load(after, upto)
    }
    fn last_revision(&self) -> Result<Option<i64>> {
        self.fake.last_revision()
    }
    fn sealed_times(&self, after: i64) -> Result<Option<Vec<(i64, i64)>>> {
        Ok(Some(
            self.fake
                .0
                .iter()
                .filter_map(|r| match r {
                    Record::Clock { revision, unix_ms } if *revision > after => {
                        Some(match self.lie {
                            Some((rev, ms)) if rev == *revision => (rev, ms),
                            _ => (*revision, *unix_ms),
                        })
                    }
                    _ => None,
                })
                .collect(),
        ))
    }
}

#[test]
fn a_time_is_found_from_segment_names_with_one_segment_read() {
    let t = |s: &str| Target::from_flags(None, Some(s)).unwrap().unwrap();
    for at in [
        "2026-12-06T00:00:10Z",
        "2026-12-06T00:00:14.999Z",
        "2026-12-06T00:00:15Z",
        "2026-12-06T00:00:17Z",
        "2026-12-06T00:00:24Z",
        "2026-12-06T00:00:29.999Z",
        "2026-12-06T01:00:00Z",
    ] {
        let scanned = choose(&two(), t(at), &Fake::new()).unwrap();
        let named = Timed::new(None);
        let c = choose(&two(), t(at), &named).unwrap();
        assert_eq!(
            (c.manifest.revision, c.to_revision),
            (scanned.manifest.revision, scanned.to_revision),
            "{at}"
        );
        // Nothing but the segment that ends at the answer is read.
        let reads = named.reads.borrow().clone();
        assert!(
            reads.is_empty() || reads == [(c.to_revision - 1, c.to_revision)],
            "{at}: {reads:?}"
        );
    }
    // A name that disagrees with its segment's mark (this one claims revision 20 was
    // sealed at 17 s; its mark says 20 s): every mark is read, and the marks decide.
    let lying = Timed::new(Some((20, 1_796_515_217_000)));
    let c = choose(&two(), t("2026-12-06T00:00:17.5Z"), &lying).unwrap();
    assert_eq!(c.to_revision, 15);
    assert!(lying.reads.borrow().contains(&(10, 30)));
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

/// A source whose survey stream (`stream_to_survey`) leaves out its first record.
struct Lossy(Fake);

impl RecordSource for Lossy {
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>> {
        self.0.load(after, upto)
    }
    fn stream_to_survey(
        &self,
        after: i64,
        upto: i64,
        f: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        for r in self.load(after, upto)?.into_iter().skip(1) {
            f(r)?;
        }
        Ok(())
    }
    fn last_revision(&self) -> Result<Option<i64>> {
        Ok(Some(30))
    }
}

#[test]
fn a_survey_read_is_not_digested_and_reads_the_survey_stream() {
    let read = |src: &dyn RecordSource, how: Read| {
        read_window_as((10, 20), how, &[], src, &mut |_| Ok(()))
    };
    let checked = read(&Fake::new(), Read::Checked).unwrap();
    let survey = read(&Fake::new(), Read::Survey).unwrap();
    assert_eq!(survey.records, checked.records);
    assert!(survey.sha256.is_empty() && !checked.sha256.is_empty());
    // The survey read went through stream_to_survey: it lacks revision 11, a gap.
    let e = read(&Lossy(Fake::new()), Read::Survey).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2, "{e}");
    assert_eq!(read(&Lossy(Fake::new()), Read::Checked).unwrap(), checked);
}

/// A source that names the segments it reads (as the catalog does), with a digest that
/// tells its reads apart.
struct Named(Fake, &'static str);

impl RecordSource for Named {
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>> {
        self.0.load(after, upto)
    }
    fn names_segments(&self) -> bool {
        true
    }
    fn stream_named(
        &self,
        after: i64,
        upto: i64,
        f: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<Option<String>> {
        self.stream(after, upto, f)?;
        Ok(Some(format!("{}:{after}:{upto}", self.1)))
    }
    fn last_revision(&self) -> Result<Option<i64>> {
        Ok(Some(30))
    }
}

#[test]
fn a_window_is_named_by_its_segments_where_the_source_can_and_as_the_plan_says() {
    let read = |src: &dyn RecordSource, how: Read| {
        read_window_as((10, 20), how, &[], src, &mut |_| Ok(()))
    };
    let by_records = read(&Fake::new(), Read::Checked).unwrap();
    assert_eq!(by_records.digest_of, DigestOf::Records);
    let named = read(&Named(Fake::new(), "a"), Read::Checked).unwrap();
    assert_eq!(
        (named.digest_of, named.sha256.as_str(), named.records),
        (DigestOf::Segments, "a:10:20", by_records.records)
    );
    // Other segments, other name: what `restore apply` compares with the plan's.
    assert_ne!(
        read(&Named(Fake::new(), "b"), Read::Checked).unwrap(),
        named
    );
    // A plan of an older version named the records: so does its apply.
    let old = read(&Named(Fake::new(), "a"), Read::CheckedAs(DigestOf::Records)).unwrap();
    assert_eq!(old, by_records);
    // A plan that named segments, applied from a source that cannot: refused.
    let e = read(&Fake::new(), Read::CheckedAs(DigestOf::Segments)).unwrap_err();
    assert_eq!(e.exit_code() as i32, 2, "{e}");
    // The plan's field: absent for records (older plans parse), "segments" otherwise.
    let mut plan = ReplayPlan::new(10, &named, ReplayStats::default(), vec![], false);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["records_sha256_of"], "segments");
    plan.records_sha256_of = DigestOf::Records;
    let mut json = serde_json::to_value(&plan).unwrap();
    assert!(json.get("records_sha256_of").is_none());
    json.as_object_mut().unwrap().remove("records_sha256_of");
    let back: ReplayPlan = serde_json::from_value(json).unwrap();
    assert_eq!(back.records_sha256_of, DigestOf::Records);
}
