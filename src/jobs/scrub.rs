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
use crate::catalog::Manifest;
use crate::pipeline::encrypt::Identity;
use crate::store::Store;
use crate::{Error, Result};

/// The backups to verify this run, in order: never scrubbed first (oldest first), then by
/// when they were last verified, until `budget` stored bytes (`None`: all of them).
pub fn rotation(
    store: &dyn Store,
    manifests: &[Manifest],
    budget: Option<u64>,
) -> Result<Vec<Manifest>> {
    let mut keyed = Vec::with_capacity(manifests.len());
    for m in manifests {
        let (_, record) = verified::read_state(store, &m.id)?;
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
pub fn record(store: &dyn Store, r: &VerifyReport, at: OffsetDateTime) -> Result<()> {
    let verified_at = at
        .format(&Rfc3339)
        .map_err(|e| Error::Failed(format!("format time: {e}")))?;
    verified::write_record(
        store,
        &VerifyRecord {
            id: r.id.clone(),
            verified_at,
            ok: r.ok,
            problems: r.problems.clone(),
        },
    )
}

/// How many backups of `manifests` are currently recorded as failing verification (for
/// the `lifeboat_backups_failing_verify` metric and the one-shot's exit code).
pub fn failing(store: &dyn Store, manifests: &[Manifest]) -> Result<usize> {
    Ok(summary(store, manifests)?.failing)
}

/// Whether backup `id` still exists (its manifest is what makes it exist).
fn still_listed(store: &dyn Store, id: &str) -> Result<bool> {
    Ok(store.stat(&crate::catalog::manifest_name(id))?.is_some())
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

/// One scrub run over a destination: list, take the rotation up to `budget`, verify each,
/// record each verdict. Damaged manifests are not in the rotation (listing rejects them;
/// `verify --all` reports them). Returns the reports, failures included; an `Err` is a
/// store or listing failure, not a damaged backup.
pub fn scrub(
    store: &dyn Store,
    budget: Option<u64>,
    identity: &Identity,
) -> Result<Vec<VerifyReport>> {
    let (all, _rejected) = crate::catalog::list(store)?;
    let mut reports = Vec::new();
    for m in rotation(store, &all, budget)? {
        let r = match super::verify::verify(store, &m, &|_| {}, identity) {
            Ok(r) => r,
            // Pruned while the rotation ran: nothing to scrub any more.
            Err(e) if is_gone(&e) => continue,
            // No identity, or one that opens none of its recipients: a configuration
            // error, not damage. Nothing is recorded against the backup.
            Err(e) if e.exit_code() == crate::ExitCode::Usage => {
                tracing::error!(
                    backup = %m.id,
                    "scrub: backup not verified, a configuration error (nothing recorded): {e}"
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        // Retention may remove a backup while it is being read: its objects vanish under
        // the verification. A backup that is gone is not a failed backup.
        if !r.ok && !still_listed(store, &m.id)? {
            continue;
        }
        record(store, &r, OffsetDateTime::now_utc())?;
        // Removed between the verification and its record: take the record away again
        // (prune removes the record with the backup; this one came after it).
        if !still_listed(store, &m.id)? {
            let _ = store.remove(&verified::verified_name(&m.id));
            continue;
        }
        reports.push(r);
    }
    Ok(reports)
}
