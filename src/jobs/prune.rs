//! `prune`: apply a retention policy to one destination.
//!
//! Safety comes before tidiness: the listing must be complete (any manifest or state object
//! that cannot be read for a reason other than damage stops the prune before anything is
//! removed), rejected manifests are left alone, the policy never removes the newest good
//! backup or a backup that failed verification ([`crate::catalog::retention`]), and each
//! backup goes manifest first, then data, then its verification record, so an interrupted
//! prune leaves at worst an orphan data object (which the next backup cleans up), never a
//! listed backup without its data. A backup that S3 object lock still protects (either of
//! its objects) is kept whole, checked before anything of it is deleted. The store's writer lock is held throughout, so a prune
//! and a backup into one destination take turns.

use std::time::Duration;

use serde::Serialize;

use crate::catalog::retention::{self, Candidate, Decision, Policy, VerifyState};
use crate::catalog::{self, verified, MANIFEST_SUFFIX};
use crate::store::Store;
use crate::{Error, Result};

/// What a prune does with one backup (`keep` or `remove` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Remove,
}

/// One backup in a prune's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PruneItem {
    pub id: String,
    pub action: Action,
    /// The rules that keep it (empty for removals).
    pub reasons: Vec<String>,
    pub verify: VerifyState,
    pub stored_size: u64,
}

/// What a prune decided and did, for the text and JSON outputs.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub destination: String,
    pub dry_run: bool,
    pub backups: Vec<PruneItem>,
    pub kept: usize,
    pub removed: usize,
    pub removed_bytes: u64,
    /// Manifests that could not be read as backups: never touched by prune.
    pub rejected: Vec<String>,
    /// Backups the policy would remove that S3 object lock still protects: kept whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<LockedBackup>,
    /// Capture segments no kept backup can use any more (see [`unreachable_segments`]),
    /// removed with the backups (or that would be, with `dry_run`).
    #[serde(skip_serializing_if = "is_zero")]
    pub segments_removed: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub segments_removed_bytes: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A backup kept because object lock forbids deleting it yet.
#[derive(Debug, Clone, Serialize)]
pub struct LockedBackup {
    pub id: String,
    /// RFC 3339, UTC: the later of its manifest's and data object's retain-until dates.
    pub retain_until: String,
}

/// Until when object lock protects any of a backup's objects (the latest date in the
/// future), asked of every object before any is deleted: a backup is removed whole or
/// not at all, never its data without its manifest or the reverse.
fn locked_until(store: &dyn Store, objects: &[&str]) -> Result<Option<std::time::SystemTime>> {
    let now = std::time::SystemTime::now();
    let mut latest = None;
    for o in objects {
        if let Some(t) = store.retained_until(o)?.filter(|t| *t > now) {
            latest = latest.max(Some(t));
        }
    }
    Ok(latest)
}

/// Remove one backup: manifest first (it stops listing), then data, then its verification
/// record. A failure names what is left, so nothing is lost track of.
fn remove_backup(store: &dyn Store, id: &str, object: &str) -> Result<()> {
    let manifest = catalog::manifest_name(id);
    let left = |e: Error, what: &str| match e {
        Error::Store {
            location,
            kind,
            message,
        } => Error::store(location, kind, format!("{message}; {what}")),
        e => Error::Failed(format!("{e}; {what}")),
    };
    store.remove(&manifest).map_err(|e| {
        left(
            e,
            &format!("backup {id} was not removed (nothing of it deleted)"),
        )
    })?;
    store.remove(object).map_err(|e| {
        left(
            e,
            &format!(
                "backup {id} is half removed: its manifest is gone, its data object {object} \
                 is left (the next backup removes it as an orphan)"
            ),
        )
    })?;
    store.remove(&verified::verified_name(id)).map_err(|e| {
        left(
            e,
            &format!("backup {id} was removed but its verification record is left"),
        )
    })
}

/// Why prune stops with nothing removed: reading `at` failed. A store error keeps its kind
/// (the retry wrapper, the metrics and `-o json` tell a timeout from a denied request).
fn partial_listing(store: &dyn Store, at: &str, e: Error) -> Error {
    match e {
        Error::Store {
            location,
            kind,
            message,
        } => Error::store(
            location,
            kind,
            format!("listing failed at {at}, nothing removed: {message}"),
        ),
        e => Error::Failed(format!(
            "listing {} failed at {at}, nothing removed: {e}",
            store.location()
        )),
    }
}

/// One listed backup: what the policy sees, and what removing it takes.
#[derive(Debug, Clone)]
pub struct Listed {
    pub candidate: Candidate,
    pub stored_size: u64,
    /// The backup's cluster and revision: which capture segments it can start from.
    pub cluster_id: u64,
    pub revision: i64,
    /// Its data object (checked to be the backup's own).
    pub object: String,
}

/// The backups of a store with their verification states, or an error if any object could
/// not be read for a reason that is not damage (a partial listing must remove nothing).
pub fn candidates(store: &dyn Store) -> Result<(Vec<Listed>, Vec<String>)> {
    let mut out = Vec::new();
    let mut rejected = Vec::new();
    let objects = store.list("")?;
    // Only records that exist are read: on S3 a GET per backup for a missing one is a
    // request (and a 404) per backup.
    let names: std::collections::HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    for obj in &objects {
        let Some(id) = obj.name.strip_suffix(MANIFEST_SUFFIX) else {
            continue;
        };
        let m = match catalog::read_manifest(store, &obj.name) {
            Ok(m) => m,
            Err(
                e
                @ (Error::Store { .. } | Error::Io { .. } | Error::Failed(_) | Error::Internal(_)),
            ) => return Err(partial_listing(store, &obj.name, e)),
            Err(e) => {
                rejected.push(format!("{}: {e}", obj.name));
                continue;
            }
        };
        // The data object prune would remove must be this backup's own, in this store.
        let own_object = m.object.starts_with(&format!("{id}."))
            && !m.object.contains('/')
            && !m.object.ends_with(MANIFEST_SUFFIX);
        let time = match retention::time_of_id(id) {
            Some(t) if m.id == id && own_object => t,
            _ => {
                rejected.push(format!(
                    "{}: names backup {} and data object {}, which prune will not touch",
                    obj.name, m.id, m.object
                ));
                continue;
            }
        };
        let record = verified::verified_name(id);
        let (verify, _) = if !names.contains(record.as_str()) {
            (VerifyState::Unchecked, None)
        } else {
            verified::read_state(store, id).map_err(|e| partial_listing(store, &record, e))?
        };
        out.push(Listed {
            candidate: Candidate {
                id: id.to_string(),
                time,
                verify,
            },
            stored_size: m.stored_size,
            cluster_id: m.cluster_id.0,
            revision: m.revision,
            object: m.object,
        });
    }
    Ok((out, rejected))
}

impl crate::catalog::Repository {
    /// Plan and (unless `dry_run`) apply `policy` to this repository (see [`prune`]).
    pub fn prune(
        &self,
        policy: &Policy,
        dry_run: bool,
        lock_wait: Duration,
    ) -> Result<PruneReport> {
        prune(self.store(), policy, dry_run, lock_wait)
    }
}

/// Plan and (unless `dry_run`) apply `policy` to `store`, holding its lock (waiting up to
/// `lock_wait`).
pub fn prune(
    store: &dyn Store,
    policy: &Policy,
    dry_run: bool,
    lock_wait: Duration,
) -> Result<PruneReport> {
    if policy.is_empty() {
        // Refuse before touching the store: the same message as the planner's.
        retention::plan(policy, &[])?;
    }
    let _lock = if dry_run {
        None
    } else {
        Some(store.lock(lock_wait)?)
    };
    let (found, rejected) = candidates(store)?;
    let only: Vec<Candidate> = found.iter().map(|l| l.candidate.clone()).collect();
    let plan = retention::plan(policy, &only)?;
    let mut report = PruneReport {
        destination: store.location(),
        dry_run,
        backups: Vec::with_capacity(plan.len()),
        kept: 0,
        removed: 0,
        removed_bytes: 0,
        rejected,
        locked: Vec::new(),
        segments_removed: 0,
        segments_removed_bytes: 0,
    };
    let by_id: std::collections::HashMap<&str, &Listed> =
        found.iter().map(|l| (l.candidate.id.as_str(), l)).collect();
    for Decision {
        id,
        mut keep,
        mut reasons,
    } in plan
    {
        let Some(l) = by_id.get(id.as_str()).copied() else {
            continue;
        };
        if !keep {
            let manifest = catalog::manifest_name(&id);
            if let Some(t) = locked_until(store, &[&manifest, &l.object])? {
                let until = crate::timestamp::Timestamp::from(t).to_string();
                reasons = vec![format!("object lock until {until}")];
                keep = true;
                report.locked.push(LockedBackup {
                    id: id.clone(),
                    retain_until: until,
                });
            }
        }
        if keep {
            report.kept += 1;
        } else {
            if !dry_run {
                remove_backup(store, &id, &l.object)?;
                tracing::info!(backup = %id, destination = %report.destination, "pruned");
            }
            report.removed += 1;
            report.removed_bytes += l.stored_size;
        }
        report.backups.push(PruneItem {
            id: id.clone(),
            action: if keep { Action::Keep } else { Action::Remove },
            reasons,
            verify: l.candidate.verify,
            stored_size: l.stored_size,
        });
    }
    let kept: Vec<&Listed> = report
        .backups
        .iter()
        .filter(|b| b.action == Action::Keep)
        .filter_map(|b| by_id.get(b.id.as_str()).copied())
        .collect();
    for seg in unreachable_segments(store, &kept)? {
        if !dry_run {
            store.remove(&seg.name)?;
        }
        report.segments_removed += 1;
        report.segments_removed_bytes += seg.size;
    }
    Ok(report)
}

/// The capture segments of a cluster that end at or before the revision of its oldest kept
/// backup: a restore to a revision in them would start from a backup that is gone (a
/// restore to the backup's own revision needs no segment), and the chain check of a
/// restore starts at the first segment after its backup, so nothing still restorable
/// depends on them. Clusters with no kept backup keep every segment.
pub fn unreachable_segments(
    store: &dyn Store,
    kept: &[&Listed],
) -> Result<Vec<crate::store::ObjectInfo>> {
    let mut oldest: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
    for l in kept {
        let r = oldest.entry(l.cluster_id).or_insert(l.revision);
        *r = (*r).min(l.revision);
    }
    if oldest.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store
        .list(catalog::capture::PREFIX)?
        .into_iter()
        .filter(|o| {
            catalog::capture::parse_name(&o.name)
                .is_some_and(|s| oldest.get(&s.cluster_id).is_some_and(|r| s.last <= *r))
        })
        .collect())
}

/// How one destination fared in a run: the failed stage (if any) and how many backups
/// retention removed.
#[derive(Debug)]
pub struct DestinationRun {
    pub destination: String,
    pub stage: Option<&'static str>,
    pub pruned: u64,
    pub prune_error: Option<Error>,
}

/// After a backup: prune (when a policy is given) each destination that stored it, and say
/// for every destination which stage failed. A failed prune never undoes the backup.
pub fn after_backup(
    dests: &[super::backup::Destination],
    outcome: &super::backup::BackupOutcome,
    policy: Option<&Policy>,
    lock_wait: Duration,
) -> Vec<DestinationRun> {
    dests
        .iter()
        .map(|d| {
            let mut run = DestinationRun {
                destination: d.name.clone(),
                stage: None,
                pruned: 0,
                prune_error: None,
            };
            if let Some((_, e)) = outcome.failed.iter().find(|(n, _)| *n == d.name) {
                run.stage = Some(super::Stage::of(e).as_str());
            } else if let (Some(p), true) =
                (policy, outcome.stored.iter().any(|(n, _)| *n == d.name))
            {
                match prune(d.store.as_ref(), p, false, lock_wait) {
                    Ok(r) => run.pruned = r.removed as u64,
                    Err(e) => {
                        run.stage = Some("prune");
                        run.prune_error = Some(e);
                    }
                }
            }
            run
        })
        .collect()
}

#[cfg(test)]
mod tests;
