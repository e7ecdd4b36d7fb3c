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

use super::{http, local_is_leader, schedule, Plan, Signals, Stop};
use crate::jobs::backup::{BackupOutcome, Destination, NoProgress};
use crate::jobs::run::{run_backup, Ran, Row, RunPlan, Watch};
use crate::Result;

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
    let plan = RunPlan {
        opts: &p.opts,
        dests: &p.dests,
        policy: p.policy.as_ref(),
        lock_timeout: p.opts.lock_timeout,
    };
    let watch: Arc<dyn Watch> = Arc::new(Logged {
        state: state.clone(),
        textfile: p.textfile.clone(),
        conn: p.opts.conn.clone(),
        quota_fallback: p.quota_fallback,
    });
    loop {
        let result = {
            let run = run_backup(&plan, &pending, Arc::new(NoProgress), Arc::clone(&watch));
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    s = sig.next() => match s {
                        Stop::Hup => *reload = true,
                        Stop::Term => {
                            tracing::info!(grace = %humantime::format_duration(grace), "stopping: waiting for the backup in flight");
                            if tokio::time::timeout(grace, &mut run).await.is_err() {
                                tracing::warn!("backup aborted at shutdown; nothing was listed");
                            }
                            return true;
                        }
                    },
                }
            }
        };
        let Some(r) = result else { return false };
        match r {
            Ok(Ran { backup: Ok(o), .. }) => {
                pending.retain(|d| o.failed.iter().any(|(n, _)| *n == d.name));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("backup failed: {e}");
                return false;
            }
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
    let _ = crate::store::blocking::offload(move || {
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

/// What the daemon makes of each step of a run ([`crate::jobs::run`]): log lines, then
/// the cluster's quota and the metrics it serves and writes.
struct Logged {
    state: http::State,
    textfile: Option<std::path::PathBuf>,
    conn: crate::source::etcd::ConnectConfig,
    quota_fallback: u64,
}

impl Watch for Logged {
    fn backed_up(&self, r: &Result<BackupOutcome>) {
        let outcome = match r {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("backup failed: {e}");
                return;
            }
        };
        for (d, m) in &outcome.stored {
            tracing::info!(backup = %m.id, destination = %d, revision = m.revision, "backup stored");
        }
        for (d, e) in &outcome.failed {
            tracing::error!(destination = %d, "backup failed: {e}");
        }
    }

    fn pruned(&self, runs: &[crate::jobs::prune::DestinationRun]) {
        for r in runs {
            if let Some(e) = &r.prune_error {
                tracing::error!(destination = %r.destination, "prune failed: {e}");
            } else if r.pruned > 0 {
                tracing::info!(destination = %r.destination, removed = r.pruned, "pruned");
            }
        }
    }

    fn metrics(&self, rows: &[Row<'_>], attempt: f64) {
        let quota = cluster_quota(&self.conn, self.quota_fallback);
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cluster
            .quota_bytes = Some(quota);
        publish(&self.state, self.textfile.as_deref(), rows, attempt);
    }
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
            let t = crate::timestamp::Timestamp::parse(&m.newest.as_ref()?.completed_at)?;
            Some(t.unix_seconds())
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
