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

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::verify::VerifyReport;
use crate::catalog::verified::{self, VerifyRecord};
use crate::catalog::{BadManifest, Manifest, Repository};
use crate::store::Store;
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
            .and_then(|r| OffsetDateTime::parse(&r.verified_at, &Rfc3339).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
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
    let verified_at = at
        .format(&Rfc3339)
        .map_err(|e| Error::Failed(format!("format time: {e}")))?;
    repo.record_verdict(&VerifyRecord {
            id: r.id.clone(),
            verified_at,
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
            .and_then(|r| OffsetDateTime::parse(&r.verified_at, &Rfc3339).ok())
            .map(|t| t.unix_timestamp_nanos() as f64 / 1e9);
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
