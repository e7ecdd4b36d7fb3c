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
mod tests {
    use super::*;
    use crate::catalog::retention::VerifyState;
    use crate::catalog::Manifest;
    use crate::store::local::LocalStore;
    use std::io::Read;

    const GOLDEN: &str =
        include_str!("../../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");
    const GOLDEN_NAME: &str = "20261129T053645.864Z-650b5d21591bfd0.manifest.json";

    /// A store with `hours` hourly backups (manifest + a small data object each).
    fn store_with(hours: u32) -> (tempfile::TempDir, LocalStore, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), false).unwrap();
        let base = Manifest::from_json(GOLDEN.as_bytes(), GOLDEN_NAME).unwrap();
        let mut ids = Vec::new();
        for h in 0..hours {
            let t =
                time::macros::datetime!(2026-11-01 00:00 UTC) + time::Duration::hours(i64::from(h));
            let mut m = base.clone();
            m.id = catalog::BackupId::new(t, 0x650b5d21591bfd0);
            m.object = catalog::data_name(&m.id);
            m.format_version = catalog::FORMAT_VERSION;
            m.revision = 100 * (i64::from(h) + 1);
            store.put_bytes(&m.object, b"data").unwrap();
            store
                .put_bytes(&catalog::manifest_name(&m.id), &m.seal().unwrap())
                .unwrap();
            ids.push(m.id.to_string());
        }
        (dir, store, ids)
    }

    #[test]
    fn segments_only_removed_backups_could_start_from_go_with_them() {
        let (dir, store, _) = store_with(4); // revisions 100, 200, 300, 400
        let cluster = Manifest::from_json(GOLDEN.as_bytes(), GOLDEN_NAME)
            .unwrap()
            .cluster_id
            .0;
        let seg = |c: u64, first: i64, last: i64| {
            format!(
                "capture-{c:016x}-{first:020}-{last:020}-{:013}.seg",
                1_796_000_000_000i64
            )
        };
        let names = [
            seg(cluster, 101, 200),
            seg(cluster, 201, 300),
            seg(cluster, 301, 350),
            seg(cluster, 351, 400),
            seg(cluster ^ 1, 1, 10), // another cluster: no kept backup of it, kept
        ];
        for n in &names {
            store.put_bytes(n, b"segment").unwrap();
        }
        // keep_last(2) keeps 300 and 400: segments ending at or before 300 are unreachable.
        let r = prune(&store, &keep_last(2), true, WAIT).unwrap();
        assert_eq!((r.segments_removed, r.segments_removed_bytes), (2, 14));
        assert!(names.iter().all(|n| dir.path().join(n).exists()), "dry run");
        let r = prune(&store, &keep_last(2), false, WAIT).unwrap();
        assert_eq!(r.segments_removed, 2);
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [false, false, true, true, true]);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["segments_removed"], 2);
    }

    fn keep_last(n: u32) -> Policy {
        Policy {
            keep_last: Some(n),
            ..Policy::default()
        }
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn prune_removes_manifest_data_and_record_and_keeps_the_rest() {
        let (_d, store, ids) = store_with(4);
        verified::write_record(
            &store,
            &verified::VerifyRecord {
                id: ids[0].clone(),
                verified_at: "2026-11-02T00:00:00Z".into(),
                ok: true,
                problems: vec![],
            },
        )
        .unwrap();
        let dry = prune(&store, &keep_last(2), true, WAIT).unwrap();
        assert_eq!((dry.kept, dry.removed), (2, 2));
        assert_eq!(
            store.list("").unwrap().len(),
            9,
            "dry run removed something"
        );
        let r = prune(&store, &keep_last(2), false, WAIT).unwrap();
        assert_eq!((r.kept, r.removed, r.removed_bytes), (2, 2, 2 * 647));
        let (left, bad) = catalog::list(&store).unwrap();
        assert!(bad.is_empty());
        let left: Vec<&str> = left.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(left, [ids[3].as_str(), ids[2].as_str()]);
        let names: Vec<String> = store
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(catalog::orphans(&store).unwrap().is_empty());
    }

    #[test]
    fn a_failed_scrub_is_kept_and_not_the_newest_good() {
        let (_d, store, ids) = store_with(3);
        verified::write_record(
            &store,
            &verified::VerifyRecord {
                id: ids[2].clone(),
                verified_at: "2026-11-02T00:00:00Z".into(),
                ok: false,
                problems: vec!["flipped byte".into()],
            },
        )
        .unwrap();
        let r = prune(&store, &keep_last(1), false, WAIT).unwrap();
        let kept: Vec<(&str, VerifyState)> = r
            .backups
            .iter()
            .filter(|b| b.action == Action::Keep)
            .map(|b| (b.id.as_str(), b.verify))
            .collect();
        assert_eq!(
            kept,
            [
                (ids[2].as_str(), VerifyState::Failed),
                (ids[1].as_str(), VerifyState::Unchecked)
            ]
        );
        assert_eq!(r.removed, 1);
    }

    /// A store whose reads of one object fail as an outage would.
    struct Flaky {
        inner: LocalStore,
        broken: String,
    }

    impl Store for Flaky {
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
            if name == self.broken {
                return Err(Error::store(
                    self.location(),
                    crate::error::StoreErrorKind::Transient,
                    format!("read {name}: connection reset"),
                ));
            }
            self.inner.load(name, offset, len)
        }
        fn stat(&self, name: &str) -> Result<Option<u64>> {
            self.inner.stat(name)
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectInfo>> {
            self.inner.list(prefix)
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.inner.remove(name)
        }
        fn lock(&self, wait: Duration) -> Result<Box<dyn crate::store::StoreLock>> {
            self.inner.lock(wait)
        }
        fn clean_partials(&self) -> Result<Vec<String>> {
            self.inner.clean_partials()
        }
    }

    #[test]
    fn a_listing_that_fails_part_way_removes_nothing() {
        let (_d, inner, ids) = store_with(4);
        let before = inner.list("").unwrap().len();
        let store = Flaky {
            inner,
            broken: catalog::manifest_name(&ids[1]),
        };
        let e = prune(&store, &keep_last(1), false, WAIT).unwrap_err();
        assert!(e.to_string().contains("nothing removed"), "{e}");
        assert_eq!(e.exit_code(), crate::ExitCode::Failed);
        // The store's error keeps its kind (a transient one can be retried, and the
        // metrics and `-o json` say `store`), and names the object it failed at.
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(e.kind_name(), "store");
        assert!(
            e.to_string()
                .contains(&catalog::manifest_name(&ids[1]).to_string()),
            "{e}"
        );
        assert_eq!(store.inner.list("").unwrap().len(), before);
    }

    #[test]
    fn rejected_manifests_are_left_alone() {
        let (_d, store, ids) = store_with(3);
        let name = catalog::manifest_name(&ids[0]);
        store.remove(&name).unwrap();
        store.put_bytes(&name, b"{not json").unwrap();
        let r = prune(&store, &keep_last(1), false, WAIT).unwrap();
        assert_eq!((r.kept, r.removed, r.rejected.len()), (1, 1, 1));
        assert!(store.stat(&name).unwrap().is_some());
        assert!(store.stat(&catalog::data_name(&ids[0])).unwrap().is_some());
    }

    #[test]
    fn an_empty_policy_touches_nothing() {
        let (_d, store, _) = store_with(2);
        let e = prune(&store, &Policy::default(), false, WAIT).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert_eq!(store.list("").unwrap().len(), 4);
    }
}
