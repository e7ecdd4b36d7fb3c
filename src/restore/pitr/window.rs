//! A chosen window's records read once: scanned for density and gaps as they pass, and
//! named by a digest (of the segments read, or of the records themselves) that a plan
//! records and `restore apply` compares.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{stop, stopped, RecordSource};
use crate::catalog::Manifest;
use crate::format::capture::Record;
use crate::restore::replay::encode_kv;
use crate::{Error, Result};

/// What a window's digest ([`Scanned::sha256`]) is computed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestOf {
    /// Every field of every record ([`records_digest`]).
    #[default]
    Records,
    /// The window's bounds and the digest of every segment read.
    Segments,
}

impl DigestOf {
    pub(super) fn is_records(&self) -> bool {
        *self == DigestOf::Records
    }
}

/// A digest of records that changes with any field of any record.
pub fn records_digest(records: &[Record]) -> String {
    let mut d = RecordsDigest::default();
    records.iter().for_each(|r| d.update(r));
    d.finish()
}

/// [`records_digest`], one record at a time.
#[derive(Default)]
pub struct RecordsDigest(Sha256);

impl RecordsDigest {
    pub fn update(&mut self, r: &Record) {
        let h = &mut self.0;
        let num = |h: &mut Sha256, v: i64| h.update(v.to_be_bytes());
        match r {
            Record::Put(kv) => {
                let v = encode_kv(kv);
                h.update(b"P");
                num(h, v.len() as i64);
                h.update(&v);
            }
            Record::Delete { key, revision } => {
                h.update(b"D");
                num(h, *revision);
                num(h, key.len() as i64);
                h.update(key);
            }
            Record::LeaseGrant { id, ttl, revision } => {
                h.update(b"G");
                for v in [*id, *ttl, *revision] {
                    num(h, v);
                }
            }
            Record::LeaseRevoke { id, revision } => {
                h.update(b"R");
                num(h, *id);
                num(h, *revision);
            }
            Record::Compact {
                compact_revision,
                revision,
            } => {
                h.update(b"C");
                num(h, *compact_revision);
                num(h, *revision);
            }
            Record::Clock { revision, unix_ms } => {
                h.update(b"T");
                num(h, *revision);
                num(h, *unix_ms);
            }
            Record::LiveHash {
                revision,
                hash,
                compact_revision,
            } => {
                h.update(b"H");
                num(h, *revision);
                num(h, i64::from(*hash));
                num(h, *compact_revision);
            }
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The records of a chosen window, read once: their count and digest, and that their
/// change revisions are every one of `(after, to]` ([`Scan::finish`] refuses a gap naming
/// the nearest revisions that can be restored).
pub struct Scan {
    after: i64,
    to: i64,
    /// The next change revision expected, and the first one after a gap.
    next: i64,
    resumes: Option<i64>,
    records: u64,
    /// None: a survey's read, which is not digested ([`Read::Survey`]).
    digest: Option<RecordsDigest>,
}

/// How a window is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every check, and a digest of the records: of the segments read when the source
    /// names them ([`RecordSource::names_segments`]), else of the records themselves.
    Checked,
    /// [`Read::Checked`] with the digest made as `DigestOf` says (what a plan recorded).
    CheckedAs(DigestOf),
    /// A compacted replay's first read ([`RecordSource::stream_to_survey`]): no digest;
    /// what it learns is checked against the [`Read::Checked`] read that follows.
    Survey,
}

/// What [`Scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub records: u64,
    /// The records' digest, hex, as `digest_of` says (empty for a [`Read::Survey`]).
    pub sha256: String,
    pub digest_of: DigestOf,
}

impl Scan {
    /// The window `(after, to]`.
    pub fn new(after: i64, to: i64) -> Scan {
        Scan {
            after,
            to,
            next: after + 1,
            resumes: None,
            records: 0,
            digest: Some(RecordsDigest::default()),
        }
    }

    /// Whether `r` is in the window (records outside it are skipped).
    pub fn feed(&mut self, r: &Record) -> bool {
        let rev = r.revision();
        if rev <= self.after || rev > self.to {
            return false;
        }
        self.records += 1;
        if let Some(d) = &mut self.digest {
            d.update(r);
        }
        if matches!(r, Record::Put(_) | Record::Delete { .. }) && self.resumes.is_none() {
            if rev == self.next {
                self.next = rev + 1;
            } else if rev > self.next {
                self.resumes = Some(rev);
            }
        }
        true
    }

    /// Refuse a revision in a gap: the error names the last revision before the gap, the
    /// first captured one after it (asked of `src` on this error path only when the
    /// window does not show it) and the first backup after it.
    pub fn finish(self, backups: &[Manifest], src: &dyn RecordSource) -> Result<Scanned> {
        let (next, to) = (self.next, self.to);
        if next > to {
            return Ok(Scanned {
                records: self.records,
                sha256: self.digest.map(RecordsDigest::finish).unwrap_or_default(),
                digest_of: DigestOf::Records,
            });
        }
        let mut resumes = self.resumes;
        if resumes.is_none() {
            if let Ok(Some(last)) = src.last_revision_from(to) {
                if last > to {
                    let mut first = None;
                    let _ = stopped(src.stream(to, last, &mut |r| {
                        if matches!(r, Record::Put(_) | Record::Delete { .. }) {
                            first = Some(r.revision());
                            return Err(stop());
                        }
                        Ok(())
                    }));
                    resumes = first;
                }
            }
        }
        let mut nearest = vec![format!("revision {} at most", next - 1)];
        if let Some(r) = resumes {
            nearest.push(format!("revisions {r} and later"));
        }
        if let Some(m) = backups
            .iter()
            .filter(|m| m.revision >= next)
            .min_by_key(|m| m.revision)
        {
            nearest.push(format!("revision {} (backup {})", m.revision, m.id));
        }
        let what = match resumes {
            Some(r) => format!(
                "revision {to} falls in a gap of the capture (revisions {next} to {} were not captured)",
                r - 1
            ),
            None => format!(
                "revision {to} is beyond the last captured change (revision {})",
                next - 1
            ),
        };
        Err(Error::flag(
            "--to-revision",
            format!("{what}: restore to {}", nearest.join(", or ")),
        ))
    }
}

/// Read the records of the window `(after, to]` from `src` once: every record goes through
/// `f` (after the scan), and the scan's verdict comes last. The capture reader refuses a
/// gap between segments naming the nearest restorable revisions: at plan time that is the
/// target's fault (exit 2), like the scan's own refusals. `backups` are named as the
/// nearest restorable revisions after a gap.
pub fn read_window(
    window: (i64, i64),
    backups: &[Manifest],
    src: &dyn RecordSource,
    f: &mut dyn FnMut(&Record) -> Result<()>,
) -> Result<Scanned> {
    read_window_as(window, Read::Checked, backups, src, f)
}

/// [`read_window`] the way `how` says.
pub fn read_window_as(
    (after, to): (i64, i64),
    how: Read,
    backups: &[Manifest],
    src: &dyn RecordSource,
    f: &mut dyn FnMut(&Record) -> Result<()>,
) -> Result<Scanned> {
    let mut scan = Scan::new(after, to);
    let by_segments = match how {
        Read::Checked => src.names_segments(),
        Read::CheckedAs(of) => of == DigestOf::Segments,
        Read::Survey => false,
    };
    if by_segments || how == Read::Survey {
        scan.digest = None;
    }
    let mut named = None;
    if to > after {
        let mut each = |r: Record| {
            // After a gap nothing more is replayed: the scan refuses the target.
            if scan.feed(&r) && scan.resumes.is_none() {
                f(&r)?;
            }
            Ok(())
        };
        match how {
            _ if by_segments => src.stream_named(after, to, &mut each).map(|n| named = n),
            Read::Checked | Read::CheckedAs(_) => src.stream(after, to, &mut each),
            Read::Survey => src.stream_to_survey(after, to, &mut each),
        }
        .map_err(|e| match e {
            Error::Refused(m) => Error::flag("--to-revision", m),
            e => e,
        })?;
    }
    let mut scanned = scan.finish(backups, src)?;
    if by_segments {
        // A source that names segments names an empty window too; one that cannot is
        // asked for what it does not have: refuse rather than compare nothing.
        let Some(n) = named.or_else(|| (to <= after).then(String::new)) else {
            return Err(Error::Usage(
                "this record source cannot name the segments it reads: make a new plan".into(),
            ));
        };
        scanned.sha256 = n;
        scanned.digest_of = DigestOf::Segments;
    }
    Ok(scanned)
}
