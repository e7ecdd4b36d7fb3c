//! Scrubbing: re-verify stored backups on a rotation and record each verdict in the
//! destination ([`crate::catalog::verified`]), restic's `check --read-data-subset` for etcd.
//!
//! Each run takes the backups that were verified longest ago (never-scrubbed ones first,
//! oldest first) up to a byte budget of stored data, so a large destination is covered over
//! several runs at a bounded cost per run. At least one backup is checked even when it alone
//! exceeds the budget; otherwise a big backup would never be scrubbed.
//!
//! A backup that fails is recorded as failed and nothing else: it is never deleted
//! automatically, and retention keeps it and never counts it as the newest good backup.

use time::OffsetDateTime;

use super::verify::VerifyReport;
use crate::catalog::verified::{self, VerifyRecord};
use crate::catalog::{BadManifest, Manifest, Repository};
use crate::store::Store;
use crate::timestamp::Timestamp;
use crate::{Error, Result};

/// The backups to verify this run, in order: never scrubbed first (oldest first), then by
/// when they were last verified, until `budget` stored bytes (`None`: all of them).
pub fn rotation(
    repo: &Repository,
    manifests: &[Manifest],
    budget: Option<u64>,
) -> Result<Vec<Manifest>> {
    let mut keyed = Vec::with_capacity(manifests.len());
    for m in manifests {
        let (_, record) = repo.verdict(&m.id)?;
        // Never scrubbed (or an unreadable time) goes first. Parsed, not compared as text:
        // RFC 3339 fractions vary in length and would misorder as strings.
        let last = record
            .and_then(|r| Timestamp::parse(&r.verified_at))
            .unwrap_or(Timestamp::from(OffsetDateTime::UNIX_EPOCH));
        keyed.push((last, m));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut spent = 0u64;
    let mut out = Vec::new();
    for (_, m) in keyed {
        if let Some(b) = budget {
            if !out.is_empty() && spent.saturating_add(m.stored_size) > b {
                break;
            }
        }
        spent = spent.saturating_add(m.stored_size);
        out.push(m.clone());
    }
    Ok(out)
}

/// Record a verification's verdict beside the backup.
pub fn record(repo: &Repository, r: &VerifyReport, at: OffsetDateTime) -> Result<()> {
    repo.record_verdict(&VerifyRecord {
        id: r.id.clone(),
        verified_at: Timestamp::from(at).to_string(),
        ok: r.ok,
        problems: r.problems.clone(),
    })
}

/// How many backups of `manifests` are currently recorded as failing verification (for
/// the `lifeboat_backups_failing_verify` metric and the one-shot's exit code).
pub fn failing(store: &dyn Store, manifests: &[Manifest]) -> Result<usize> {
    Ok(summary(store, manifests)?.failing)
}

fn is_gone(e: &Error) -> bool {
    matches!(
        e,
        Error::NotFound(_)
            | Error::Store {
                kind: crate::error::StoreErrorKind::NotFound,
                ..
            }
    )
}

/// What the verification records of a destination say, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Backups whose last verification failed.
    pub failing: usize,
    /// The newest passing verification (Unix time), if any backup ever passed one.
    pub last_success: Option<f64>,
}

pub fn summary(store: &dyn Store, manifests: &[Manifest]) -> Result<Summary> {
    let mut s = Summary::default();
    for m in manifests {
        let (state, record) = verified::read_state(store, &m.id)?;
        if state == crate::catalog::retention::VerifyState::Failed {
            s.failing += 1;
        }
        let passed_at = record
            .filter(|r| r.ok)
            .and_then(|r| Timestamp::parse(&r.verified_at))
            .map(|t| t.unix_seconds());
        if let Some(t) = passed_at {
            s.last_success = Some(s.last_success.map_or(t, |l: f64| l.max(t)));
        }
    }
    Ok(s)
}

/// What a scrub run reports as it goes: the CLI draws a bar and prints each verdict, the
/// daemon logs. Every method defaults to nothing.
pub trait Watch: Sync {
    /// A manifest the listing rejected (a damaged backup; it is not in the rotation).
    fn rejected(&self, _b: &BadManifest) {}
    /// Verification of `m` starts.
    fn begin(&self, _m: &Manifest) {}
    /// Stored bytes of the backup being verified read so far.
    fn set(&self, _done: u64) {}
    /// Verification of the current backup ended (whatever its outcome).
    fn end(&self) {}
    /// A verdict, after it was recorded (or failed to be, when recording is best effort).
    fn verdict(&self, _r: &VerifyReport) {}
    /// A backup left unverified for a configuration reason (no identity, or one that
    /// opens none of its recipients): not damage, nothing recorded against it.
    fn not_verified(&self, _m: &Manifest, _e: &Error) {}
}

/// A scrub run that reports nothing as it goes.
pub struct Quiet;
impl Watch for Quiet {}

/// How a scrub run goes.
pub struct ScrubOptions<'a> {
    /// Stored bytes to verify at most (`None`: every backup); at least one is verified.
    pub budget: Option<u64>,
    /// `false`: a verdict that cannot be recorded fails the run (the daemon: its rotation
    /// lives in the records). `true`: carry on, and report how many were not recorded
    /// (`verify --all`: the verdicts still decide the exit code).
    pub best_effort_record: bool,
    pub watch: &'a dyn Watch,
}

/// What a scrub run found.
#[derive(Debug, Default)]
pub struct Scrubbed {
    /// How many backups the rotation took (before any vanished under the run).
    pub chosen: usize,
    /// The verdicts, failures included, in rotation order.
    pub reports: Vec<VerifyReport>,
    /// Manifests the listing rejected.
    pub rejected: Vec<BadManifest>,
    /// Backups left unverified for a configuration reason (see [`Watch::not_verified`]).
    pub not_verified: Vec<Error>,
    /// With best-effort recording: the first error and how many verdicts were not recorded.
    pub unrecorded: Option<(Error, usize)>,
}

/// One scrub run over a destination: list, take the rotation up to the budget, verify
/// each, record each verdict. Damaged manifests are not in the rotation (they come back in
/// [`Scrubbed::rejected`]). An `Err` is a store or listing failure, not a damaged backup.
/// A backup that retention removes while the run reads it is no verdict: it is skipped.
pub fn scrub(repo: &Repository, opts: &ScrubOptions<'_>) -> Result<Scrubbed> {
    let (all, rejected) = repo.list()?;
    for b in &rejected {
        opts.watch.rejected(b);
    }
    let mut out = Scrubbed {
        rejected,
        ..Scrubbed::default()
    };
    if all.is_empty() {
        return Ok(out);
    }
    let chosen = rotation(repo, &all, opts.budget)?;
    out.chosen = chosen.len();
    let watch = opts.watch;
    for m in chosen {
        watch.begin(&m);
        let r = repo.verify(&m, &|done| watch.set(done));
        watch.end();
        let r = match r {
            Ok(r) => r,
            // Pruned while the rotation ran: nothing to scrub any more.
            Err(e) if is_gone(&e) => continue,
            // No identity, or one that opens none of its recipients: a configuration
            // error, not damage. Nothing is recorded against the backup.
            Err(e) if e.exit_code() == crate::ExitCode::Usage => {
                watch.not_verified(&m, &e);
                out.not_verified.push(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        // Retention may remove a backup while it is being read: its objects vanish under
        // the verification. A backup that is gone is not a failed backup.
        if !r.ok && !repo.contains(&m.id)? {
            continue;
        }
        match record(repo, &r, OffsetDateTime::now_utc()) {
            Ok(()) => {}
            Err(e) if opts.best_effort_record => match &mut out.unrecorded {
                None => out.unrecorded = Some((e, 1)),
                Some((_, n)) => *n += 1,
            },
            Err(e) => return Err(e),
        }
        // Removed between the verification and its record: take the record away again
        // (prune removes the record with the backup; this one came after it).
        if !repo.contains(&m.id)? {
            let _ = repo.store().remove(&verified::verified_name(&m.id));
            continue;
        }
        watch.verdict(&r);
        out.reports.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::retention::VerifyState;
    use crate::catalog::{self, Keys};
    use crate::store::local::LocalStore;
    use std::sync::{Arc, Mutex};

    const GOLDEN: &str =
        include_str!("../../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");

    /// A repository with `n` hourly backups whose data objects are not backups (damage),
    /// the last one `encrypted` (to a key nobody here holds) if asked.
    fn repo_with(n: i64, encrypted: bool) -> (tempfile::TempDir, Repository, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), false).unwrap();
        let base = Manifest::from_json(GOLDEN.as_bytes(), "golden").unwrap();
        let mut ids = Vec::new();
        for h in 0..n {
            let t = time::macros::datetime!(2026-11-01 00:00 UTC) + time::Duration::hours(h);
            let mut m = base.clone();
            m.id = catalog::BackupId::new(t, 0x650b5d21591bfd0);
            m.object = catalog::data_name(&m.id);
            m.format_version = catalog::FORMAT_VERSION;
            m.stored_size = 4;
            if encrypted && h == n - 1 {
                m.encryption = crate::pipeline::encrypt::SCHEME.into();
                m.recipients = vec!["age1nobodyhere".into()];
            }
            store.put_bytes(&m.object, b"data").unwrap();
            store
                .put_bytes(&catalog::manifest_name(&m.id), &m.seal().unwrap())
                .unwrap();
            ids.push(m.id.to_string());
        }
        let repo = Repository::new("d", Arc::new(store), Keys::none());
        (dir, repo, ids)
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl Watch for Seen {
        fn rejected(&self, b: &BadManifest) {
            self.0.lock().unwrap().push(format!("rejected {}", b.name));
        }
        fn begin(&self, m: &Manifest) {
            self.0.lock().unwrap().push(format!("begin {}", m.id));
        }
        fn verdict(&self, r: &VerifyReport) {
            self.0
                .lock()
                .unwrap()
                .push(format!("verdict {} {}", r.id, r.ok));
        }
        fn not_verified(&self, m: &Manifest, _e: &Error) {
            self.0
                .lock()
                .unwrap()
                .push(format!("not verified {}", m.id));
        }
    }

    #[test]
    fn a_run_verifies_records_and_reports_each_backup() {
        let (_dir, repo, ids) = repo_with(2, false);
        repo.store().put_bytes("x.manifest.json", b"{").unwrap();
        let seen = Seen::default();
        let opts = ScrubOptions {
            budget: None,
            best_effort_record: false,
            watch: &seen,
        };
        let s = scrub(&repo, &opts).unwrap();
        assert_eq!(s.chosen, 2);
        assert_eq!(s.rejected.len(), 1);
        assert!(s.reports.iter().all(|r| !r.ok), "{:?}", s.reports);
        for id in &ids {
            assert_eq!(repo.verdict(id).unwrap().0, VerifyState::Failed);
        }
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(seen[0], "rejected x.manifest.json");
        assert_eq!(seen[1], format!("begin {}", ids[0]));
        assert_eq!(seen[2], format!("verdict {} false", ids[0]));
        // The next run takes the one verified longest ago first, within the budget.
        let s = scrub(
            &repo,
            &ScrubOptions {
                budget: Some(1),
                ..opts
            },
        )
        .unwrap();
        assert_eq!(s.chosen, 1);
        assert_eq!(s.reports[0].id, ids[0]);
    }

    #[test]
    fn an_encrypted_backup_without_keys_is_not_verified_and_nothing_is_recorded() {
        let (_dir, repo, ids) = repo_with(2, true);
        let seen = Seen::default();
        let opts = ScrubOptions {
            budget: None,
            best_effort_record: true,
            watch: &seen,
        };
        let s = scrub(&repo, &opts).unwrap();
        assert_eq!(s.reports.len(), 1);
        assert_eq!(s.not_verified.len(), 1);
        assert_eq!(s.not_verified[0].exit_code(), crate::ExitCode::Usage);
        assert!(s.unrecorded.is_none());
        assert_eq!(
            repo.verdict(&ids[1]).unwrap(),
            (VerifyState::Unchecked, None)
        );
        let seen = seen.0.lock().unwrap().clone();
        assert!(
            seen.contains(&format!("not verified {}", ids[1])),
            "{seen:?}"
        );
    }

    #[test]
    fn an_empty_destination_chooses_nothing() {
        let (_dir, repo, _) = repo_with(0, false);
        let s = scrub(
            &repo,
            &ScrubOptions {
                budget: None,
                best_effort_record: false,
                watch: &Quiet,
            },
        )
        .unwrap();
        assert_eq!((s.chosen, s.reports.len(), s.rejected.len()), (0, 0, 0));
    }
}
