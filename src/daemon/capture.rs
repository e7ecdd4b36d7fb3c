//! `[capture]` under `lifeboat run`: capture runs beside the schedule (with `when =
//! "leader"` only on the daemon whose local member leads), restarted when it stops, its
//! metrics served on `/metrics` and its lag on `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use super::{http, Plan};
use crate::jobs::capture::{CaptureMetrics, CaptureOptions};

/// How often leadership is checked, and how long a failed capture waits to start again.
const RECHECK: Duration = Duration::from_secs(5);

/// Run capture until `stop` turns true (capture then seals and stores what it holds) or
/// the task is aborted; `gap` is notified when capture records a gap (the scheduler then
/// takes a full backup at once).
pub async fn supervise(
    p: &Plan,
    state: http::State,
    gap: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(settings) = p.capture.clone() else {
        return;
    };
    let opts = CaptureOptions {
        conn: p.opts.conn.clone(),
        settings: settings.clone(),
    };
    let dests = p.dests.to_vec();
    let leader_only = p.leader_only;
    loop {
        if leader_only {
            match super::local_is_leader(&opts.conn).await {
                Ok((true, _)) => {}
                Ok((false, _)) => {
                    set(&state, None, settings.max_lag);
                    if pause(RECHECK, &stop).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!("capture: cannot tell whether the local member leads: {e}");
                    if pause(RECHECK, &stop).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let metrics = Arc::new(CaptureMetrics::default());
        set(&state, Some(Arc::clone(&metrics)), settings.max_lag);
        let conn = opts.conn.clone();
        let (m, gap, mut stopping) = (Arc::clone(&metrics), Arc::clone(&gap), stop.clone());
        // Stop when the local member no longer leads (another daemon takes over) or the
        // daemon stops; say when a gap was recorded.
        let lost = async move {
            let mut gaps = 0;
            for tick in 1u64.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = m.gaps.load(std::sync::atomic::Ordering::Relaxed);
                if now > gaps {
                    gaps = now;
                    gap.notify_one();
                }
                if tick % RECHECK.as_secs() != 0 || !leader_only {
                    continue;
                }
                if matches!(super::local_is_leader(&conn).await, Ok((false, _))) {
                    tracing::info!("capture: the local member no longer leads; capture stops here");
                    return;
                }
            }
        };
        let ended = async move {
            tokio::select! {
                _ = lost => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        };
        match crate::jobs::capture::run(&opts, &dests, metrics, ended).await {
            Ok(()) => {}
            Err(e) => tracing::error!("capture: {e}; starting again in {}s", RECHECK.as_secs()),
        }
        if *stop.borrow() || pause(RECHECK, &stop).await {
            return;
        }
    }
}

/// Sleep for `d`; true if `stop` turned true meanwhile.
async fn pause(d: Duration, stop: &tokio::sync::watch::Receiver<bool>) -> bool {
    let mut watching = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = watching.wait_for(|s| *s) => true,
    }
}

fn set(state: &http::State, m: Option<Arc<CaptureMetrics>>, max_lag: Duration) {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.capture = m;
    s.capture_max_lag = max_lag.as_secs_f64();
}

/// The capture families, OpenMetrics text (without `# EOF`).
pub fn metrics_text(m: &CaptureMetrics) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, v: String| {
        out.push_str(&format!("# TYPE {name} {kind}\n# HELP {name} {help}\n"));
        let sample = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        out.push_str(&format!("{sample} {v}\n"));
    };
    family(
        "lifeboat_capture_lag_seconds",
        "gauge",
        "Seconds since every destination last held the cluster's newest revision (0 when they do).",
        format!("{:.3}", m.lag_seconds()),
    );
    family(
        "lifeboat_capture_lag_revisions",
        "gauge",
        "Revisions etcd is ahead of what every destination holds.",
        m.lag_revisions().to_string(),
    );
    family(
        "lifeboat_capture_durable_revision",
        "gauge",
        "The newest revision stored in every destination.",
        m.durable_revision.load(Relaxed).to_string(),
    );
    family(
        "lifeboat_capture_gaps",
        "counter",
        "Gaps recorded: revisions compacted before capture saw them.",
        m.gaps.load(Relaxed).to_string(),
    );
    family(
        "lifeboat_capture_bytes",
        "counter",
        "Segment bytes stored, all destinations (rate() gives bytes per second).",
        m.bytes.load(Relaxed).to_string(),
    );
    family(
        "lifeboat_capture_segments",
        "counter",
        "Segments stored, all destinations.",
        m.segments.load(Relaxed).to_string(),
    );
    out
}
