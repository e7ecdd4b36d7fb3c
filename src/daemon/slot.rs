//! One slot of the schedule: the leader check, the backup and its retries, then what the
//! destinations hold now (prune, metrics, health).
//!
//! A retry goes only to the destinations that failed: the snapshot already stored in the
//! others is not taken again, so a destination that stays broken for a whole slot never
//! makes the healthy ones churn through their retention. A daemon whose member does not
//! lead (`when = "leader"`) still refreshes its view of the destinations every slot: its
//! `/metrics` and `/healthz` say what the destinations hold, whoever backed them up.

use std::sync::Arc;
use std::time::Duration;

use super::{http, local_is_leader, schedule, unix_now, Plan, Signals, Stop};
use crate::jobs::backup::{backup, BackupOutcome, Destination, NoProgress};
use crate::{Error, Result};

/// One slot: the leader check, then the backup with retries until the next slot starts.
/// Returns `true` when a stop signal arrived.
pub(super) async fn slot(
    p: &Plan,
    state: &http::State,
    sig: &mut Signals,
    grace: Duration,
    reload: &mut bool,
) -> bool {
    if p.leader_only {
        let skipped = match local_is_leader(&p.opts.conn).await {
            Ok((true, _)) => None,
            Ok((false, leader)) => {
                tracing::info!(leader = %leader, "skipped: the local member is not the leader (schedule.when = \"leader\")");
                Some(())
            }
            Err(e) => {
                tracing::warn!("skipped: cannot tell whether the local member leads: {e}");
                Some(())
            }
        };
        if skipped.is_some() {
            refresh(p, state).await;
            return false;
        }
    }
    // Retries stop when the next slot starts (that slot gets its own attempt).
    let deadline = tokio::time::Instant::now()
        + schedule::until_next_slot(&p.schedule, Duration::ZERO).unwrap_or(p.schedule.interval());
    let mut backoff = Duration::from_secs(1);
    // The destinations still to back up in this slot: all of them, then those that failed.
    let mut pending: Vec<Destination> = p.dests.to_vec();
    loop {
        let attempt = unix_now();
        let result = {
            let run = backup(&p.opts, &pending, Arc::new(NoProgress));
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    s = sig.next() => match s {
                        Stop::Hup => *reload = true,
                        Stop::Term => {
                            tracing::info!(grace = %humantime::format_duration(grace), "stopping: waiting for the backup in flight");
                            match tokio::time::timeout(grace, &mut run).await {
                                Ok(r) => { record(p, state, attempt, &r, &pending).await; }
                                Err(_) => tracing::warn!("backup aborted at shutdown; nothing was listed"),
                            }
                            return true;
                        }
                    },
                }
            }
        };
        let Some(r) = result else { return false };
        record(p, state, attempt, &r, &pending).await;
        if let Ok(o) = &r {
            pending.retain(|d| o.failed.iter().any(|(n, _)| *n == d.name));
        }
        if pending.is_empty() || tokio::time::Instant::now() + backoff >= deadline {
            return false;
        }
        let names: Vec<&str> = pending.iter().map(|d| d.name.as_str()).collect();
        tracing::info!(
            retry_in = %humantime::format_duration(backoff),
            destinations = %names.join(", "),
            "retrying the destinations that failed"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            s = sig.next() => match s { Stop::Term => return true, Stop::Hup => *reload = true },
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// What the destinations hold now, without a backup (a slot this daemon does not back up
/// in): the metrics and health every daemon serves.
pub(super) async fn refresh(p: &Plan, state: &http::State) {
    let dests: Vec<Destination> = p.dests.to_vec();
    let (st, tf) = (state.clone(), p.textfile.clone());
    let (conn, fallback) = (p.opts.conn.clone(), p.quota_fallback);
    let _ = tokio::task::spawn_blocking(move || {
        let quota = cluster_quota(&conn, fallback);
        st.lock()
            .unwrap_or_else(|p| p.into_inner())
            .cluster
            .quota_bytes = Some(quota);
        let rows: Vec<_> = dests.iter().map(|d| (d, None, 0)).collect();
        publish(&st, tf.as_deref(), &rows, 0.0);
    })
    .await;
}

/// Log, prune, write metrics for one attempt at `tried` (the destinations of this
/// attempt; the others of the plan keep their state and count no failure).
async fn record(
    p: &Plan,
    state: &http::State,
    attempt: f64,
    r: &Result<BackupOutcome>,
    tried: &[Destination],
) {
    let empty = BackupOutcome {
        stored: vec![],
        failed: vec![],
    };
    let (outcome, all_stage) = match r {
        Ok(o) => (o, None),
        Err(e) => {
            tracing::error!("backup failed: {e}");
            (&empty, Some(crate::metrics::stage_of(e)))
        }
    };
    for (d, m) in &outcome.stored {
        tracing::info!(backup = %m.id, destination = %d, revision = m.revision, "backup stored");
    }
    for (d, e) in &outcome.failed {
        tracing::error!(destination = %d, "backup failed: {e}");
    }
    let dests: Vec<Destination> = p.dests.to_vec();
    let policy = p.policy.clone();
    let lock = p.opts.lock_timeout;
    let textfile = p.textfile.clone();
    let state = state.clone();
    let (conn, quota_fallback) = (p.opts.conn.clone(), p.quota_fallback);
    // The failed stage of each destination, from the typed errors (the copies handed to
    // the blocking thread below only carry their text). A destination not in this attempt
    // did not fail in it.
    let failed_stages: Vec<Option<&'static str>> = p
        .dests
        .iter()
        .map(|d| {
            if !tried.iter().any(|t| t.name == d.name) {
                return None;
            }
            all_stage.or_else(|| {
                outcome
                    .failed
                    .iter()
                    .find(|(n, _)| *n == d.name)
                    .map(|(_, e)| crate::metrics::stage_of(e))
            })
        })
        .collect();
    let outcome = match r {
        Ok(o) => BackupOutcome {
            stored: o.stored.clone(),
            failed: o
                .failed
                .iter()
                .map(|(n, e)| (n.clone(), Error::Failed(e.to_string())))
                .collect(),
        },
        Err(_) => empty,
    };
    // Stores block: prune and metrics run on a blocking thread.
    let _ = tokio::task::spawn_blocking(move || {
        let runs = crate::jobs::prune::after_backup(&dests, &outcome, policy.as_ref(), lock);
        for r in &runs {
            if let Some(e) = &r.prune_error {
                tracing::error!(destination = %r.destination, "prune failed: {e}");
            } else if r.pruned > 0 {
                tracing::info!(destination = %r.destination, removed = r.pruned, "pruned");
            }
        }
        let quota = cluster_quota(&conn, quota_fallback);
        state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cluster
            .quota_bytes = Some(quota);
        let rows: Vec<_> = dests
            .iter()
            .zip(&runs)
            .zip(&failed_stages)
            .map(|((d, r), f)| (d, f.or(r.prune_error.as_ref().map(|_| "prune")), r.pruned))
            .collect();
        publish(&state, textfile.as_deref(), &rows, attempt);
    })
    .await;
}

/// The cluster's backend quota: etcd's own `etcd_server_quota_backend_bytes` from the
/// first endpoint that serves it, else `[etcd] quota_bytes` (default etcd's 2 GiB), with a
/// warning the first time. Blocks: called on a blocking thread of the daemon's runtime.
pub(super) fn cluster_quota(conn: &crate::source::etcd::ConnectConfig, fallback: u64) -> u64 {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let rt = tokio::runtime::Handle::current();
    let mut last = None;
    for ep in &conn.endpoints {
        match rt.block_on(crate::source::etcd::quota::quota_bytes(conn, ep)) {
            Ok(q) => return q,
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                quota_bytes = fallback,
                "cannot read etcd's quota from /metrics, using [etcd] quota_bytes: {e}"
            );
        }
    }
    fallback
}

/// Render the metrics after a run (counters carried from the last render, or from the
/// textfile after a restart), serve them, and write the textfile if configured. Blocks.
/// `attempt` 0: no backup attempt now (start-up, a scrub, a slot another daemon backs up
/// in); the last one is kept.
pub(crate) fn publish(
    state: &http::State,
    textfile: Option<&std::path::Path>,
    rows: &[(&Destination, Option<&'static str>, u64)],
    attempt: f64,
) {
    // One render at a time: the backup slot and the scrubber both publish, and each carries
    // the other's counters forward from the previous render.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let attempt = if attempt > 0.0 {
        attempt
    } else {
        state.lock().unwrap_or_else(|p| p.into_inner()).last_attempt
    };
    let mut ms: Vec<_> = rows
        .iter()
        .map(|(d, stage, pruned)| {
            crate::metrics::collect(d.store.as_ref(), &d.name, attempt, *stage, *pruned)
        })
        .collect();
    let last_success = ms
        .iter()
        .filter_map(|m| {
            let t = time::OffsetDateTime::parse(
                &m.newest.as_ref()?.completed_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            Some(t.unix_timestamp_nanos() as f64 / 1e9)
        })
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
    let previous = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        if s.metrics.is_empty() {
            textfile
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default()
        } else {
            s.metrics.clone()
        }
    };
    // A verification that passed stays the last one that passed when retention removes
    // the backup it was about.
    crate::metrics::carry_verify_success(&previous, &mut ms);
    let cluster = state.lock().unwrap_or_else(|p| p.into_inner()).cluster;
    let text = crate::metrics::render(&ms, &cluster, &crate::metrics::previous_counters(&previous));
    if let Some(path) = textfile {
        if let Err(e) = crate::metrics::write_textfile(path, &crate::metrics::to_text_format(&text))
        {
            tracing::error!("metrics textfile: {e}");
        }
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.metrics = text;
    s.last_success = last_success;
    s.last_attempt = attempt;
}
