//! `restore plan --to-revision R | --to-time T`: which full backup, which captured records,
//! and what the restored cluster will answer.
//!
//! The newest full backup at or below R is the base; the captured records after its
//! revision up to R are loaded through a [`RecordSource`] (the catalog's capture reader,
//! [`crate::catalog::capture::load_records`], or anything a test hands in), checked, and
//! replayed offline ([`super::replay`]) so that the plan records R, what the replay
//! writes, a digest of the records (apply reloads them and refuses others), and the
//! expected revision and hashkv for `restore check`. Every refusal here is a usage error
//! (exit 2) that names the nearest revisions that can be restored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::replay::{encode_kv, ReplayStats};
use crate::catalog::Manifest;
use crate::format::capture::Record;
use crate::timestamp::Timestamp;
use crate::{Error, Result};

/// Where captured records come from.
pub trait RecordSource {
    /// The records with revision in `(after, upto]`, in stream order, every segment's
    /// digest and the chain checked (see [`crate::catalog::capture::load_records`]).
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>>;
    /// The last durable captured revision (None: nothing captured). Only `--to-time`
    /// needs it.
    fn last_revision(&self) -> Result<Option<i64>>;
    /// [`last_revision`](Self::last_revision), told a revision the caller reads from
    /// (a segment listing then starts there instead of at the oldest segment).
    fn last_revision_from(&self, hint: i64) -> Result<Option<i64>> {
        let _ = hint;
        self.last_revision()
    }
}

/// A record source shared with `restore apply` ([`super::apply::ApplyOptions::records`]).
#[derive(Clone)]
pub struct SharedSource(pub std::sync::Arc<dyn RecordSource + Send + Sync>);

impl std::fmt::Debug for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSource")
    }
}

/// The capture segments in a destination, for one cluster.
pub struct CatalogRecords<'a> {
    pub repo: &'a crate::catalog::Repository,
    /// Hex, as in manifests.
    pub cluster_id: String,
}

impl RecordSource for CatalogRecords<'_> {
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>> {
        crate::catalog::capture::load_records(self.repo, &self.cluster_id, after, upto)
    }

    fn last_revision(&self) -> Result<Option<i64>> {
        crate::catalog::capture::last_revision(self.repo, &self.cluster_id)
    }

    fn last_revision_from(&self, hint: i64) -> Result<Option<i64>> {
        crate::catalog::capture::last_revision_from(self.repo, &self.cluster_id, hint)
    }
}

/// What the restore replays to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Revision(i64),
    Time(Timestamp),
}

impl Target {
    /// From `--to-revision` / `--to-time` (at most one: clap enforces it).
    pub fn from_flags(rev: Option<i64>, time: Option<&str>) -> Result<Option<Target>> {
        match (rev, time) {
            (Some(r), _) if r < 1 => Err(Error::flag(
                "--to-revision",
                format!("{r} is not a revision (revisions start at 1)"),
            )),
            (Some(r), _) => Ok(Some(Target::Revision(r))),
            (None, Some(t)) => Timestamp::parse(t)
                .map(|t| Some(Target::Time(t)))
                .ok_or_else(|| {
                    Error::flag(
                        "--to-time",
                        format!("{t:?} is not an RFC 3339 time (e.g. 2026-12-06T01:30:00Z)"),
                    )
                }),
            (None, None) => Ok(None),
        }
    }
}

/// The base backup and the records to replay on it.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub manifest: Manifest,
    pub to_revision: i64,
    /// Records in `(manifest.revision, to_revision]`.
    pub records: Vec<Record>,
    /// `--to-time` as given (RFC 3339), when the revision was found by time.
    pub to_time: Option<String>,
}

/// What plan.json records about the replay (`replay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayPlan {
    /// The backup's revision: the records replayed follow it.
    pub after: i64,
    pub records: u64,
    /// SHA-256 of the records ([`records_digest`]): `restore apply` reloads the records
    /// and refuses any others.
    pub records_sha256: String,
    pub revisions: u64,
    pub puts: u64,
    pub deletes: u64,
    pub lease_grants: u64,
    pub lease_revokes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<i64>,
    /// Revisions whose live `HashKV` (recorded by capture) the replayed data matched.
    pub live_hashes_checked: Vec<i64>,
}

impl ReplayPlan {
    pub fn new(after: i64, records: &[Record], stats: ReplayStats, checked: Vec<i64>) -> Self {
        ReplayPlan {
            after,
            records: records.len() as u64,
            records_sha256: records_digest(records),
            revisions: stats.revisions,
            puts: stats.puts,
            deletes: stats.deletes,
            lease_grants: stats.lease_grants,
            lease_revokes: stats.lease_revokes,
            compact_revision: stats.compact_revision,
            live_hashes_checked: checked,
        }
    }
}

/// A digest of records that changes with any field of any record.
pub fn records_digest(records: &[Record]) -> String {
    let mut h = Sha256::new();
    let num = |h: &mut Sha256, v: i64| h.update(v.to_be_bytes());
    for r in records {
        match r {
            Record::Put(kv) => {
                let v = encode_kv(kv);
                h.update(b"P");
                num(&mut h, v.len() as i64);
                h.update(&v);
            }
            Record::Delete { key, revision } => {
                h.update(b"D");
                num(&mut h, *revision);
                num(&mut h, key.len() as i64);
                h.update(key);
            }
            Record::LeaseGrant { id, ttl, revision } => {
                h.update(b"G");
                for v in [*id, *ttl, *revision] {
                    num(&mut h, v);
                }
            }
            Record::LeaseRevoke { id, revision } => {
                h.update(b"R");
                num(&mut h, *id);
                num(&mut h, *revision);
            }
            Record::Compact {
                compact_revision,
                revision,
            } => {
                h.update(b"C");
                num(&mut h, *compact_revision);
                num(&mut h, *revision);
            }
            Record::Clock { revision, unix_ms } => {
                h.update(b"T");
                num(&mut h, *revision);
                num(&mut h, *unix_ms);
            }
            Record::LiveHash {
                revision,
                hash,
                compact_revision,
            } => {
                h.update(b"H");
                num(&mut h, *revision);
                num(&mut h, i64::from(*hash));
                num(&mut h, *compact_revision);
            }
        }
    }
    hex::encode(h.finalize())
}

fn newest_at_or_below(backups: &[Manifest], rev: i64) -> Option<&Manifest> {
    backups
        .iter()
        .filter(|m| m.revision <= rev)
        .max_by_key(|m| (m.revision, m.created_at.clone()))
}

fn oldest(backups: &[Manifest]) -> Option<&Manifest> {
    backups.iter().min_by_key(|m| m.revision)
}

/// Refuse a revision in a gap of the records: the change revisions must be every one of
/// `(after, to]`. The error names the last revision before the gap, the first captured one
/// after it (asked of `src` on this error path only) and the first backup after it: the
/// nearest revisions that can be restored.
fn check_dense(
    backups: &[Manifest],
    records: &[Record],
    after: i64,
    to: i64,
    src: &dyn RecordSource,
) -> Result<()> {
    let mut next = after + 1;
    for r in records {
        let rev = r.revision();
        if !matches!(r, Record::Put(_) | Record::Delete { .. }) || rev < next {
            continue;
        }
        if rev > next || rev > to {
            break;
        }
        next = rev + 1;
    }
    if next > to {
        return Ok(());
    }
    let change = |r: &&Record| matches!(r, Record::Put(_) | Record::Delete { .. });
    let mut resumes = records
        .iter()
        .filter(change)
        .map(Record::revision)
        .find(|r| *r > next);
    if resumes.is_none() {
        if let Ok(Some(last)) = src.last_revision_from(to) {
            if last > to {
                resumes = src
                    .load(to, last)
                    .ok()
                    .and_then(|v| v.iter().filter(change).map(Record::revision).next());
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

/// Pick the base backup and load the records for `target`. `backups` are the cluster's
/// verified full backups.
pub fn choose(backups: &[Manifest], target: Target, src: &dyn RecordSource) -> Result<Chosen> {
    let Some(first) = oldest(backups) else {
        return Err(Error::Usage(
            "no full backup to restore from: a point-in-time restore starts from one".into(),
        ));
    };
    // `--to-time` reads the records to find its revision: kept, so they are read once.
    let (to, to_time, read) = match target {
        Target::Revision(r) => (r, None, None),
        Target::Time(t) => {
            let (to, read) = revision_at(backups, t, src)?;
            (to, Some(t.to_string()), read)
        }
    };
    let Some(base) = newest_at_or_below(backups, to) else {
        return Err(Error::flag(
            "--to-revision",
            format!(
                "revision {to} is before the oldest full backup {} (revision {}): the oldest revision that can be restored is {}",
                first.id, first.revision, first.revision
            ),
        ));
    };
    if to > base.revision {
        // Beyond what was captured: a usage error at plan time (exit 2) naming the newest
        // revision that can be restored, before any segment is read.
        let last = src
            .last_revision_from(base.revision + 1)?
            .unwrap_or(base.revision)
            .max(base.revision);
        if to > last {
            return Err(Error::flag(
                "--to-revision",
                format!(
                    "revision {to} is beyond the last captured change (revision {last}): restore to revision {last} at most{}",
                    if last == base.revision {
                        format!(" (backup {}; run `lifeboat capture` to record changes after it)", base.id)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
    }
    let records = if to <= base.revision {
        Vec::new()
    } else if let Some((_, read)) = read.filter(|(after, _)| *after == base.revision) {
        read
    } else {
        // The capture reader refuses a gap in the range naming the nearest restorable
        // revisions: at plan time that is the target's fault (exit 2), like the checks here.
        src.load(base.revision, to).map_err(|e| match e {
            Error::Refused(m) => Error::flag("--to-revision", m),
            e => e,
        })?
    };
    let records: Vec<Record> = records
        .into_iter()
        .filter(|r| r.revision() > base.revision && r.revision() <= to)
        .collect();
    check_dense(backups, &records, base.revision, to, src)?;
    Ok(Chosen {
        manifest: base.clone(),
        to_revision: to,
        records,
        to_time,
    })
}

/// [`choose`] among the backups of `repo`: with `id` `latest`, every backup of the newest
/// backup's cluster; with an explicit id, that backup alone (a usage error when it is
/// newer than the target).
pub fn choose_in(
    repo: &crate::catalog::Repository,
    id: &str,
    target: Target,
    src: &dyn RecordSource,
) -> Result<Chosen> {
    let anchor = repo.resolve(id)?;
    let backups: Vec<Manifest> = if id == "latest" {
        let (all, _) = repo.list()?;
        all.into_iter()
            .filter(|m| m.cluster_id == anchor.cluster_id)
            .collect()
    } else {
        vec![anchor]
    };
    choose(&backups, target, src)
}

/// Records already read for `--to-time`, with the revision they follow.
type ReadRecords = Option<(i64, Vec<Record>)>;

/// `--to-time T`: the revision of the newest `Clock` mark at or before T, or the revision
/// of the newest backup taken by T when no mark after it is that old; with the records it
/// read to find it, so that [`choose`] does not read them again.
fn revision_at(
    backups: &[Manifest],
    t: Timestamp,
    src: &dyn RecordSource,
) -> Result<(i64, ReadRecords)> {
    let taken_by = |m: &&Manifest| Timestamp::parse(&m.created_at).is_some_and(|c| c <= t);
    let Some(base) = backups.iter().filter(taken_by).max_by_key(|m| m.revision) else {
        let first = backups
            .iter()
            .filter_map(|m| Some((Timestamp::parse(&m.created_at)?, m)))
            .min_by_key(|(c, _)| *c);
        return Err(Error::flag(
            "--to-time",
            match first {
                Some((c, m)) => format!(
                    "{t} is before the oldest full backup {} (taken at {c}): the earliest time that can be restored is {c}",
                    m.id
                ),
                None => format!("{t}: no full backup records when it was taken"),
            },
        ));
    };
    let Some(last) = src
        .last_revision_from(base.revision + 1)?
        .filter(|l| *l > base.revision)
    else {
        return Ok((base.revision, None));
    };
    let t_ms = i64::try_from(t.as_offset().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let marks = src.load(base.revision, last)?;
    let to = marks
        .iter()
        .filter_map(|r| match r {
            Record::Clock { revision, unix_ms } if *unix_ms <= t_ms => Some(*revision),
            _ => None,
        })
        .max()
        .unwrap_or(base.revision)
        .max(base.revision);
    Ok((to, Some((base.revision, marks))))
}

/// Make `plan` a point-in-time plan: replay the chosen records onto the base backup's
/// snapshot offline (every live hash recorded in the window is checked: a mismatch is an
/// integrity error, exit 3) and record the target, the replay and what `restore check`
/// must then find (revision, hashkv and key count of the replayed data).
pub fn plan_replay(
    plan: &mut super::plan::Plan,
    snapshot: &dyn crate::io::ReadAt,
    object: &str,
    chosen: &Chosen,
) -> Result<()> {
    let db = super::predict::database_of(snapshot);
    let r = super::replay::replay(&db, &chosen.records, chosen.to_revision)?;
    let spec = super::predict::spec_of(plan);
    let p = super::predict::predict_replayed(&db, &spec, &r.replay.edits, object)?;
    plan.to_revision = Some(chosen.to_revision);
    plan.to_time = chosen.to_time.clone();
    plan.replay = Some(ReplayPlan::new(
        r.replay.base_revision,
        &chosen.records,
        r.replay.stats,
        r.checked,
    ));
    plan.expected_revision = Some(p.revision);
    plan.expected_hashkv = Some(p.hashkv);
    plan.expected_keys = Some(p.keys);
    if chosen.to_revision > r.replay.base_revision {
        plan.warnings.push(format!(
            "users, roles and auth settings are those of backup {} (revision {}): capture records key changes and leases only, so auth changes made after it are not restored",
            plan.backup_id, r.replay.base_revision
        ));
    }
    Ok(())
}

/// What `restore test --to-revision R` expects from a booted restore of `snapshot` (a
/// backup file with or without etcd's trailer) with `chosen`'s records replayed: the
/// replay's edits, the hashkv at R (live hashes in the window checked on the way) and the
/// key count.
pub fn test_expectations(
    snapshot: &dyn crate::io::ReadAt,
    object: &str,
    chosen: &Chosen,
) -> Result<(Vec<crate::format::bolt::write::Edit>, u32, u64)> {
    let db = super::predict::database_of(snapshot);
    let r = super::replay::replay(&db, &chosen.records, chosen.to_revision)?;
    // Any one-member spec: membership changes neither hashkv nor keys.
    let spec = super::native::RestoreSpec {
        members: vec![super::native::MemberSpec {
            name: "pitr".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
        }],
        token: "pitr".into(),
        bump_revision: None,
        mark_compacted: false,
    };
    let p = super::predict::predict_replayed(&db, &spec, &r.replay.edits, object)?;
    Ok((r.replay.edits, p.hashkv, p.keys))
}

/// The replay's edits for `restore apply`: the plan's records loaded again from `src`,
/// refused unless they are the ones the plan was made with (same digest).
pub fn apply_edits<R: crate::io::ReadAt>(
    plan: &super::plan::Plan,
    db: &crate::format::bolt::Db<R>,
    src: &dyn RecordSource,
) -> Result<Vec<crate::format::bolt::write::Edit>> {
    let (Some(to), Some(rp)) = (plan.to_revision, &plan.replay) else {
        return Ok(Vec::new());
    };
    let records: Vec<Record> = if to > rp.after {
        src.load(rp.after, to)?
            .into_iter()
            .filter(|r| r.revision() > rp.after && r.revision() <= to)
            .collect()
    } else {
        Vec::new()
    };
    let sha = records_digest(&records);
    if sha != rp.records_sha256 {
        return Err(Error::integrity(
            format!("capture records ({}, {to}]", rp.after),
            format!(
                "{} records with SHA-256 {sha}, the plan was made with {} records with SHA-256 {}; make a new plan",
                records.len(),
                rp.records,
                rp.records_sha256
            ),
        ));
    }
    Ok(super::replay::replay_edits(db, &records, to)?.edits)
}

#[cfg(test)]
mod tests;
pub mod verify;
