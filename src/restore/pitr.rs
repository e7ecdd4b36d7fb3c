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

use super::replay::ReplayStats;
use crate::catalog::Manifest;
use crate::format::capture::Record;
use crate::timestamp::Timestamp;
use crate::{Error, Result};

/// Where captured records come from.
pub trait RecordSource {
    /// The records with revision in `(after, upto]`, in stream order, every segment's
    /// digest and the chain checked (see [`crate::catalog::capture::load_records`]).
    fn load(&self, after: i64, upto: i64) -> Result<Vec<Record>>;
    /// [`RecordSource::load`] one record at a time, so that a long window is never held in
    /// memory whole.
    fn stream(&self, after: i64, upto: i64, f: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        for r in self.load(after, upto)? {
            f(r)?;
        }
        Ok(())
    }
    /// [`RecordSource::stream`] for a first read whose every use is checked against a
    /// second, full one (a compacted replay's survey): a source may skip its costliest
    /// check (the catalog does not compute segments' digests). The default is `stream`.
    fn stream_to_survey(
        &self,
        after: i64,
        upto: i64,
        f: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.stream(after, upto, f)
    }
    /// Whether [`RecordSource::stream_named`] names what it reads (verified segments).
    fn names_segments(&self) -> bool {
        false
    }
    /// [`RecordSource::stream`], and, when [`RecordSource::names_segments`], what names
    /// the records read without hashing them: SHA-256 over the window's bounds and every
    /// segment's own digest, hex (see `catalog::capture::stream_records_with`).
    fn stream_named(
        &self,
        after: i64,
        upto: i64,
        f: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<Option<String>> {
        self.stream(after, upto, f).map(|()| None)
    }
    /// Whether any record in `(after, upto]` is stored encrypted (a segment encrypted with
    /// age): a plan then keeps no decrypted copy of what they hold ([`ReplayPlan::edits`]).
    /// Nothing is read but a listing.
    fn encrypted(&self, after: i64, upto: i64) -> Result<bool> {
        let _ = (after, upto);
        Ok(false)
    }
    /// The last durable captured revision (None: nothing captured). Only `--to-time`
    /// needs it.
    fn last_revision(&self) -> Result<Option<i64>>;
    /// [`last_revision`](Self::last_revision), told a revision the caller reads from
    /// (a segment listing then starts there instead of at the oldest segment).
    fn last_revision_from(&self, hint: i64) -> Result<Option<i64>> {
        let _ = hint;
        self.last_revision()
    }
    /// Each segment after revision `after`, as its name describes it: (last revision, the
    /// time it was sealed, UTC ms). `None`: this source has no names (every clock mark is
    /// read instead). Nothing is read but a listing.
    fn sealed_times(&self, after: i64) -> Result<Option<Vec<(i64, i64)>>> {
        let _ = after;
        Ok(None)
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

    fn stream(&self, after: i64, upto: i64, f: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        crate::catalog::capture::stream_records(self.repo, &self.cluster_id, after, upto, f)
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
        crate::catalog::capture::stream_records_with(
            self.repo,
            &self.cluster_id,
            after,
            upto,
            true,
            f,
        )
        .map(|d| Some(hex::encode(d)))
    }

    fn stream_to_survey(
        &self,
        after: i64,
        upto: i64,
        f: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        crate::catalog::capture::stream_records_with(
            self.repo,
            &self.cluster_id,
            after,
            upto,
            false,
            f,
        )
        .map(|_| ())
    }

    fn encrypted(&self, after: i64, upto: i64) -> Result<bool> {
        crate::catalog::capture::any_encrypted(self.repo, &self.cluster_id, after, upto)
    }

    fn last_revision(&self) -> Result<Option<i64>> {
        crate::catalog::capture::last_revision(self.repo, &self.cluster_id)
    }

    fn last_revision_from(&self, hint: i64) -> Result<Option<i64>> {
        crate::catalog::capture::last_revision_from(self.repo, &self.cluster_id, hint)
    }

    fn sealed_times(&self, after: i64) -> Result<Option<Vec<(i64, i64)>>> {
        crate::catalog::capture::sealed_times(self.repo, &self.cluster_id, after).map(Some)
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

/// The base backup and the revision to replay it to (the records in
/// `(manifest.revision, to_revision]` are read when replayed: [`replay_chosen`]).
#[derive(Debug, Clone)]
pub struct Chosen {
    pub manifest: Manifest,
    pub to_revision: i64,
    /// The cluster's backups, for naming the nearest restorable revisions.
    pub backups: Vec<Manifest>,
    /// `--to-time` as given (RFC 3339), when the revision was found by time.
    pub to_time: Option<String>,
    /// `--compact`: compact the window at `to_revision - 1` as it is replayed
    /// ([`super::replay::Held`]).
    pub compact: bool,
    /// Bytes a compacted replay may hold the window's changes in before it reads the
    /// window twice instead ([`replayed::hold_budget`]).
    pub hold_bytes: usize,
}

/// What plan.json records about the replay (`replay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayPlan {
    /// The backup's revision: the records replayed follow it.
    pub after: i64,
    pub records: u64,
    /// What names the records (`records_sha256_of`): `restore apply` reloads the records
    /// and refuses any others.
    pub records_sha256: String,
    /// What `records_sha256` is a digest of: the records ([`records_digest`]; plans of
    /// older versions, sources without segments) or the segments they were read from
    /// ([`RecordSource::stream_named`]).
    #[serde(default, skip_serializing_if = "DigestOf::is_records")]
    pub records_sha256_of: DigestOf,
    pub revisions: u64,
    pub puts: u64,
    pub deletes: u64,
    pub lease_grants: u64,
    pub lease_revokes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<i64>,
    /// Revisions whose live `HashKV` (recorded by capture) the replayed data matched.
    pub live_hashes_checked: Vec<i64>,
    /// `--compact`: the window was compacted at `compact_revision` as it was replayed
    /// (each key's newest change at or below it and every change after it written), and
    /// only its newest live hash was proven. `restore apply` replays it the same way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
    /// Puts and deletes the compaction left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compacted_away: u64,
    /// The transactions the plan's replay committed, kept in a file beside plan.json
    /// (`--compact` only, when they fit the memory a compacted replay may hold): `restore
    /// apply` commits them onto the same backup instead of reading the window again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<KeptEdits>,
}

/// The file of [`ReplayPlan::edits`]: an edit log (`format::bolt::write::log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptEdits {
    /// Its name in the plan's directory ([`EDITS_FILE`]).
    pub file: String,
    /// SHA-256 of the file, hex: `restore apply` refuses any other.
    pub sha256: String,
    pub bytes: u64,
    pub transactions: u64,
}

/// The name of the kept edits in a plan's directory.
pub const EDITS_FILE: &str = "replay.edits";

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ReplayPlan {
    pub fn new(
        after: i64,
        scanned: &Scanned,
        stats: ReplayStats,
        checked: Vec<i64>,
        compacted: bool,
    ) -> Self {
        ReplayPlan {
            after,
            records: scanned.records,
            records_sha256: scanned.sha256.clone(),
            records_sha256_of: scanned.digest_of,
            revisions: stats.revisions,
            puts: stats.puts,
            deletes: stats.deletes,
            lease_grants: stats.lease_grants,
            lease_revokes: stats.lease_revokes,
            compact_revision: stats.compact_revision,
            live_hashes_checked: checked,
            compacted,
            compacted_away: stats.compacted_away,
            edits: None,
        }
    }
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

/// Pick the base backup and load the records for `target`. `backups` are the cluster's
/// verified full backups.
pub fn choose(backups: &[Manifest], target: Target, src: &dyn RecordSource) -> Result<Chosen> {
    let Some(first) = oldest(backups) else {
        return Err(Error::Usage(
            "no full backup to restore from: a point-in-time restore starts from one".into(),
        ));
    };
    let (to, to_time) = match target {
        Target::Revision(r) => (r, None),
        Target::Time(t) => (revision_at(backups, t, src)?, Some(t.to_string())),
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
    Ok(Chosen {
        manifest: base.clone(),
        to_revision: to,
        backups: backups.to_vec(),
        to_time,
        compact: false,
        hold_bytes: replayed::hold_budget(),
    })
}

/// What `restore plan` and `restore test` replay to: nothing without a target, else
/// [`choose_in`] over the changes captured from backup `id`'s cluster, compacted if asked.
pub fn choose_target(
    repo: &crate::catalog::Repository,
    id: &str,
    target: Option<Target>,
    compact: bool,
) -> Result<Option<Chosen>> {
    let Some(t) = target else {
        return Ok(None);
    };
    let src = CatalogRecords {
        repo,
        cluster_id: repo.resolve(id)?.cluster_id.to_string(),
    };
    let mut c = choose_in(repo, id, t, &src)?;
    c.compact = compact;
    Ok(Some(c))
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

/// A record source's reader stops early when its callback returns this (found what it
/// looked for); [`stopped`] turns it back into success.
fn stop() -> Error {
    Error::Usage(STOP.into())
}
const STOP: &str = "\u{0}stop reading";

fn stopped(r: Result<()>) -> Result<()> {
    match r {
        Err(Error::Usage(m)) if m == STOP => Ok(()),
        r => r,
    }
}

/// `--to-time T`: the revision of the newest `Clock` mark at or before T, or the revision
/// of the newest backup taken by T when no mark after it is that old (clocks of capture
/// processes on different hosts need not agree on order: the newest by revision counts).
///
/// Capture ends every segment with its one `Clock` mark, at the segment's last revision,
/// and names the segment with that mark's time. So the segment names give the answer
/// without reading the window ([`by_names`]); the one segment that ends there is read to
/// check that its mark says what its name says. A source without names, or a segment
/// whose mark disagrees with its name, has every mark after the backup read instead.
fn revision_at(backups: &[Manifest], t: Timestamp, src: &dyn RecordSource) -> Result<i64> {
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
    // The names' listing answers first; the last revision (another listing) only bounds
    // the read of every mark.
    let t_ms = i64::try_from(t.as_offset().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if let Some(to) = by_names(src, base.revision, t_ms)? {
        return Ok(to);
    }
    let Some(last) = src
        .last_revision_from(base.revision + 1)?
        .filter(|l| *l > base.revision)
    else {
        return Ok(base.revision);
    };
    let mut to = base.revision;
    src.stream(base.revision, last, &mut |r| {
        if let Record::Clock { revision, unix_ms } = r {
            if unix_ms <= t_ms {
                to = to.max(revision);
            }
        }
        Ok(())
    })?;
    Ok(to)
}

/// [`revision_at`] from the segments' names after revision `after`: the last revision of
/// the newest segment sealed at or before `t_ms` (`after` when none is), once that
/// segment's last record is read and found to be a `Clock` mark at that revision and time.
/// `None`: the source has no names, or the mark is not what the name says.
fn by_names(src: &dyn RecordSource, after: i64, t_ms: i64) -> Result<Option<i64>> {
    let Some(times) = src.sealed_times(after)? else {
        return Ok(None);
    };
    let Some((last, sealed)) = times
        .into_iter()
        .filter(|&(last, sealed)| last > after && sealed <= t_ms)
        .max_by_key(|&(last, _)| last)
    else {
        return Ok(Some(after));
    };
    let mut mark = None;
    src.stream(last - 1, last, &mut |r| {
        mark = match r {
            Record::Clock { revision, unix_ms } => Some((revision, unix_ms)),
            _ => None,
        };
        Ok(())
    })?;
    if mark == Some((last, sealed)) {
        return Ok(Some(last));
    }
    tracing::warn!(
        "the capture segment ending at revision {last} is named as sealed at {sealed} ms, its clock mark says {mark:?}: reading every clock mark to find the revision for --to-time"
    );
    Ok(None)
}

mod ahead;
mod replayed;
mod window;
pub use ahead::{verify_reading_ahead, Ahead};
pub use replayed::{
    apply_replay, hold_budget, plan_replay, plan_replay_onto, replay_chosen, test_replay,
};
pub use window::{
    read_window, read_window_as, records_digest, DigestOf, Read, RecordsDigest, Scan, Scanned,
};

#[cfg(test)]
mod tests;
pub mod verify;
