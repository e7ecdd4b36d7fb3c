//! The daemon's scrubbing rotation (`[verify] every`, `budget`): at each multiple of
//! `every` since the Unix epoch, every destination re-reads the backups verified longest
//! ago up to the byte budget ([`crate::jobs::scrub`]) and records each verdict there. A
//! backup that fails is logged and counted in `lifeboat_backups_failing_verify`; nothing is
//! ever deleted. With `when = "leader"` only the daemon whose local member leads scrubs.
//! It runs beside the backup schedule (reading does not take the writer lock),
//! on the blocking pool, so a long scrub never delays a backup slot.

use std::time::Duration;

use super::{http, publish, schedule, Destination};

/// What the plan says about scrubbing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scrub {
    pub every: Duration,
    pub budget: u64,
}

/// Scrub on the rotation until `stop` turns true (a rotation under way ends after the
/// destination it is reading), or the caller aborts the task.
pub async fn rotate(
    s: Scrub,
    dests: Vec<Destination>,
    leader_only: Option<crate::source::etcd::ConnectConfig>,
    state: http::State,
    textfile: Option<std::path::PathBuf>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let sched = schedule::Schedule::Every(s.every);
    loop {
        let Some(wait) = schedule::until_next_slot(&sched, Duration::ZERO) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(conn) = &leader_only {
            match super::local_is_leader(conn).await {
                Ok((true, _)) => {}
                Ok((false, leader)) => {
                    tracing::info!(leader = %leader, "scrub skipped: the local member is not the leader (schedule.when = \"leader\")");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(
                        "scrub skipped: cannot tell whether the local member leads: {e}"
                    );
                    continue;
                }
            }
        }
        let dests: Vec<Destination> = dests.to_vec();
        let (state, textfile, stopping) = (state.clone(), textfile.clone(), stop.clone());
        let _ = crate::store::blocking::offload(move || {
            let stopped = || *stopping.borrow();
            run_once(&dests, s.budget, &stopped);
            if stopped() {
                return;
            }
            let rows: Vec<_> = dests.iter().map(|d| (d, None, 0)).collect();
            publish(&state, textfile.as_deref(), &rows, 0.0);
        })
        .await;
        if *stop.borrow() {
            return;
        }
    }
}

/// Logs what the scrub job leaves unverified as it goes.
struct Logged;

impl crate::jobs::scrub::Watch for Logged {
    fn not_verified(&self, m: &crate::catalog::Manifest, e: &crate::Error) {
        tracing::error!(
            backup = %m.id,
            "scrub: backup not verified, a configuration error (nothing recorded): {e}"
        );
    }
}

/// One rotation over every destination, logging each verdict, until `stopped`. Blocks.
fn run_once(dests: &[Destination], budget: u64, stopped: &dyn Fn() -> bool) {
    use crate::jobs::scrub::{scrub, ScrubOptions};
    for d in dests {
        if stopped() {
            tracing::info!(destination = %d.name, "scrub skipped: lifeboat is stopping");
            continue;
        }
        let opts = ScrubOptions {
            budget: Some(budget),
            best_effort_record: false,
            watch: &Logged,
        };
        match scrub(&d.repository(), &opts) {
            Err(e) => tracing::error!(destination = %d.name, "scrub failed: {e}"),
            Ok(s) => {
                let reports = s.reports;
                for r in &reports {
                    if r.ok {
                        tracing::info!(destination = %d.name, backup = %r.id, "scrub: backup verified");
                    } else {
                        tracing::error!(
                            destination = %d.name,
                            backup = %r.id,
                            problems = %r.problems.join("; "),
                            "scrub: backup FAILED verification (kept; inspect with lifeboat verify --from DEST ID)"
                        );
                    }
                }
                let failed = reports.iter().filter(|r| !r.ok).count();
                tracing::info!(destination = %d.name, verified = reports.len(), failed, "scrub finished");
            }
        }
    }
}
