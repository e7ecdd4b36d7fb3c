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
    let mut n = 0;
    for m in manifests {
        if verified::read_state(store, &m.id)?.0 == crate::catalog::retention::VerifyState::Failed {
            n += 1;
        }
    }
    Ok(n)
}
