//! `lifeboat run`: the scheduler daemon (first cut: `every` schedules, leader-only slots,
//! retries, prune after success, textfile metrics, clean shutdown, SIGHUP reload).
//!
//! Slots are multiples of `every` since the Unix epoch, so daemons on every control-plane
//! node agree on them; with `when = "leader"` only the one whose local member leads backs up
//! in a slot. A failed backup is retried with a doubling back-off (1 s, 2 s, ... 60 s) until
//! the next slot. On SIGTERM/SIGINT an in-flight backup gets `shutdown_grace` to finish;
//! after that it is dropped, which leaves at most a partial object (never a manifest), and
//! the next backup cleans it up.

pub mod calendar;
mod capture;
pub mod http;
mod memory;
pub mod schedule;
pub mod scrubber;
mod slot;
pub mod units;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::catalog::retention::Policy;
use crate::catalog::Access;
use crate::config::Layers;
use crate::error::EtcdErrorKind;
use crate::jobs::backup::{BackupOptions, Destination};
use crate::task::AbortOnDrop;
use crate::{Error, Result};
pub use schedule::Schedule;
pub(crate) use slot::publish;

pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Everything one slot needs, rebuilt from the config on SIGHUP.
pub struct Plan {
    pub schedule: Schedule,
    pub jitter: Duration,
    pub leader_only: bool,
    pub opts: BackupOptions,
    pub dests: Vec<Destination>,
    pub policy: Option<Policy>,
    pub textfile: Option<PathBuf>,
    /// `[etcd] quota_bytes`: the quota reported when etcd's /metrics does not say.
    pub quota_fallback: u64,
    /// `[verify] every` and `budget`: the scrubbing rotation (none: no scrubbing).
    pub scrub: Option<scrubber::Scrub>,
    /// `[metrics] listen`: where `/metrics` and `/healthz` are served (none: no listener).
    pub listen: Option<std::net::SocketAddr>,
    /// How the destinations were opened, and the identity the scrubber decrypts with.
    pub access: Access,
    /// `[capture]`: point-in-time capture beside the schedule (none: no capture).
    pub capture: Option<crate::config::CaptureSettings>,
}

/// Build the daemon's plan from the merged settings; `access` opens the destinations (the
/// CLI builds it from the same settings, `Layers::access`).
pub fn plan(layers: &Layers, access: &Access) -> Result<Plan> {
    let file = layers.file.as_ref().map(|(_, c)| c);
    let schedule = file.and_then(|c| c.schedule.clone()).ok_or_else(|| {
        Error::flag(
            "--config",
            "no [schedule]: add every = \"1h\" (lifeboat run needs a schedule)",
        )
    })?;
    let sched = match (&schedule.cron, schedule.every) {
        (Some(c), _) => Schedule::cron(c).map_err(|m| Error::flag("--config", m))?,
        (None, Some(e)) if e.0 >= Duration::from_secs(1) => Schedule::Every(e.0),
        _ => {
            return Err(Error::flag(
                "--config",
                "[schedule] every: give an interval of at least 1s",
            ))
        }
    };
    let (conn, _) = layers.connect()?;
    let (b, _) = layers.backup()?;
    let (to, _) = layers.destinations(&[])?;
    let mut dests = Vec::new();
    for d in to {
        let encryption = layers.encryption_for(&d, &[], &[])?.map(Arc::new);
        dests.push(Destination {
            store: access.open(&d, true)?.into(),
            name: d,
            encryption,
            keys: access.keys().clone(),
        });
    }
    let policy = layers.retention(&Default::default()).policy();
    Ok(Plan {
        schedule: sched,
        jitter: schedule.jitter.map(|j| j.0).unwrap_or_default(),
        leader_only: schedule.when.as_deref() != Some("always"),
        opts: BackupOptions {
            conn,
            source: b.source,
            retries: b.retries,
            frames: b.frames,
            rate_limit: b.rate_limit,
            stream_idle_timeout: b.stream_timeout,
            read_back: b.read_back,
            lock_timeout: b.lock_timeout,
        },
        dests,
        policy: (!policy.is_empty()).then_some(policy),
        textfile: file.and_then(|c| c.metrics.as_ref()?.textfile.clone()),
        quota_fallback: file
            .and_then(|c| c.etcd.quota_bytes)
            .map_or(crate::config::resolve::DEFAULT_QUOTA_BYTES, |q| q.0),
        scrub: match file.and_then(|c| c.verify.as_ref()) {
            Some(v) => match v.every {
                Some(e) if e.0 >= Duration::from_secs(1) => Some(scrubber::Scrub {
                    every: e.0,
                    budget: v
                        .budget
                        .map_or(crate::config::resolve::DEFAULT_SCRUB_BUDGET, |b| b.0),
                }),
                Some(_) => {
                    return Err(Error::flag(
                        "--config",
                        "[verify] every: give an interval of at least 1s",
                    ))
                }
                None => None,
            },
            None => None,
        },
        listen: match file
            .and_then(|c| c.metrics.as_ref()?.listen.clone())
            .unwrap_or_else(|| crate::config::resolve::DEFAULT_METRICS_LISTEN.to_string())
        {
            l if l == "off" => None,
            l => Some(l.parse().map_err(|_| {
                Error::flag(
                    "--config",
                    format!("[metrics] listen = {l:?}: not an address (e.g. 127.0.0.1:9477, or \"off\")"),
                )
            })?),
        },
        access: access.clone(),
        capture: match (layers.file.as_ref(), file.and_then(|c| c.capture.as_ref())) {
            (Some((path, _)), Some(c)) => Some(c.resolve(&path.display().to_string())?),
            _ => None,
        },
    })
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleep until the next slot (plus jitter), saying when it is; forever when the schedule
/// has no future slot (signals still stop or reload the daemon).
async fn sleep_until_slot(p: &Plan) {
    match schedule::until_next_slot(&p.schedule, p.jitter) {
        Some(d) => {
            let at = crate::timestamp::Timestamp::from(time::OffsetDateTime::now_utc() + d);
            tracing::info!(at = %at, "next slot");
            tokio::time::sleep(d).await
        }
        None => {
            tracing::warn!(schedule = %p.schedule.describe(), "the schedule has no future slot: no more backups");
            std::future::pending::<()>().await
        }
    }
}

/// Whether the local member (the first endpoint) is the leader; `Err` when it cannot tell.
pub(crate) async fn local_is_leader(
    conn: &crate::source::etcd::ConnectConfig,
) -> Result<(bool, String)> {
    let endpoint = conn
        .endpoints
        .first()
        .cloned()
        .ok_or_else(|| Error::flag("--endpoints", "no endpoint"))?;
    let mut client = conn.connect_one(&endpoint, false).await?;
    let status = tokio::time::timeout(conn.command_timeout, client.status())
        .await
        .map_err(|_| Error::Etcd {
            endpoint: endpoint.clone(),
            kind: EtcdErrorKind::Timeout,
            message: "status: no answer".into(),
        })?
        .map_err(|e| crate::source::etcd::errors::classify(conn, &endpoint, "status", &e))?;
    let me = status.header().map(|h| h.member_id()).unwrap_or(0);
    Ok((
        me != 0 && me == status.leader(),
        format!("{:x}", status.leader()),
    ))
}

enum Stop {
    Term,
    Hup,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        let s = |k| signal(k).map_err(|e| Error::Failed(format!("signal handler: {e}")));
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            hup: s(SignalKind::hangup())?,
        })
    }
    async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Term,
            _ = self.hup.recv() => Stop::Hup,
        }
    }
}

/// Set the allocator up for a long-running daemon ([`memory`]): call it first, before the
/// edge builds the runtime (its threads take their arenas when they start).
pub fn prepare_process() {
    memory::configure();
}

/// Run until SIGTERM/SIGINT, on the caller's runtime (one worker thread is plenty: the
/// work is I/O, and the blocking store calls go to `store::blocking::offload`). `load` reads the
/// config (initially and on SIGHUP) on a blocking thread (it opens stores); a reload that
/// fails keeps the running plan and logs why.
pub async fn run(
    load: impl Fn() -> Result<Plan> + Send + Sync + 'static,
    grace: Duration,
) -> Result<()> {
    let load = Arc::new(load);
    let first = Arc::clone(&load);
    let mut p = crate::store::blocking::offload(move || first())
        .await
        .and_then(|r| r)?;
    let state: http::State = Default::default();
    let mut sig = Signals::new()?;
    // The state before the first slot: what the destinations hold now.
    let max_age = |p: &Plan| 2.0 * p.schedule.interval().as_secs_f64() + grace.as_secs_f64();
    state.lock().unwrap_or_else(|p| p.into_inner()).max_age = max_age(&p);
    slot::refresh(&p, &state).await;
    let _listener = match p.listen {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    Error::flag("--config", format!("[metrics] listen = {addr}: {} (set [metrics] listen to a free address, or \"off\")", crate::error::io_words(&e)))
                })?;
            tracing::info!(%addr, "serving /metrics and /healthz");
            Some(AbortOnDrop::spawn(http::serve(l, state.clone())))
        }
    };
    tracing::info!(schedule = %p.schedule.describe(), leader_only = p.leader_only, destinations = p.dests.len(), "scheduler started");
    // Set once, at shutdown: the scrubber ends between destinations, capture seals.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut scrubber = start_scrubber(&p, &state, &stop);
    let gap = Arc::new(tokio::sync::Notify::new());
    let mut capture = start_capture(&p, &state, &gap, &stop);
    loop {
        let mut reload = false;
        tokio::select! {
            _ = sleep_until_slot(&p) => {
                let stop = slot::slot(&p, &state, &mut sig, grace, &mut reload).await;
                memory::release();
                if stop {
                    break;
                }
            }
            _ = gap.notified() => {
                tracing::warn!("capture recorded a gap: taking a full backup now, so that restores can start after it");
                let stop = slot::slot(&p, &state, &mut sig, grace, &mut reload).await;
                memory::release();
                if stop {
                    break;
                }
            }
            s = sig.next() => match s {
                Stop::Term => break,
                Stop::Hup => reload = true,
            },
        }
        if reload {
            // Loading opens stores, which block: never on a runtime worker.
            let l = Arc::clone(&load);
            let loaded = crate::store::blocking::offload(move || l())
                .await
                .and_then(|r| r);
            match loaded {
                Ok(n) => {
                    p = n;
                    scrubber = start_scrubber(&p, &state, &stop);
                    capture = start_capture(&p, &state, &gap, &stop);
                    state.lock().unwrap_or_else(|p| p.into_inner()).max_age = max_age(&p);
                    tracing::info!(destinations = p.dests.len(), "configuration reloaded");
                }
                Err(e) => {
                    tracing::error!("reload failed, keeping the running configuration: {e}")
                }
            }
        }
    }
    tracing::info!("scheduler stopped");
    drop(_listener);
    wind_down(stopping, scrubber, capture, grace).await;
    Ok(())
}

/// Stop the scrubber and capture within `grace`, and wait (within the same grace) for the
/// blocking work they left: the runtime must outlive every store call still in flight
/// (see [`crate::store::blocking::in_flight`]).
async fn wind_down(
    stopping: tokio::sync::watch::Sender<bool>,
    scrubber: Option<AbortOnDrop<()>>,
    capture: Option<AbortOnDrop<()>>,
    grace: Duration,
) {
    let deadline = tokio::time::Instant::now() + grace;
    let _ = stopping.send(true);
    // Capture seals what it holds and stores it; the scrubber ends its destination.
    let tasks = async {
        for t in [capture, scrubber].into_iter().flatten() {
            let _ = t.join().await;
        }
    };
    let _ = tokio::time::timeout_at(deadline, tasks).await;
    let left = crate::store::blocking::settle(
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await;
    if left > 0 {
        tracing::warn!(
            left,
            "store calls still running {} after the stop; exiting without them (what they leave half-written is removed by the next run)",
            humantime::format_duration(grace)
        );
    }
}

/// The scrubbing rotation's task, if `[verify] every` is set (restarted on reload).
fn start_scrubber(
    p: &Plan,
    state: &http::State,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<AbortOnDrop<()>> {
    let s = p.scrub?;
    tracing::info!(every = %humantime::format_duration(s.every), budget = s.budget, "scrubbing on a rotation");
    let dests = p.dests.to_vec();
    // With when = "leader" only the leader's daemon scrubs: the daemons on the other
    // members would re-read the same shared destination at the same instant.
    let leader = p.leader_only.then(|| p.opts.conn.clone());
    Some(AbortOnDrop::spawn(scrubber::rotate(
        s,
        dests,
        leader,
        state.clone(),
        p.textfile.clone(),
        stop.clone(),
    )))
}

/// Capture's supervisor, if `[capture]` is set (restarted on reload).
fn start_capture(
    p: &Plan,
    state: &http::State,
    gap: &Arc<tokio::sync::Notify>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<AbortOnDrop<()>> {
    let settings = p.capture.clone()?;
    tracing::info!(flush = %humantime::format_duration(settings.flush), leader_only = p.leader_only, "capture beside the schedule");
    let plan = Plan {
        schedule: p.schedule.clone(),
        jitter: p.jitter,
        leader_only: p.leader_only,
        opts: p.opts.clone(),
        dests: p.dests.to_vec(),
        policy: None,
        textfile: None,
        quota_fallback: p.quota_fallback,
        scrub: None,
        listen: None,
        access: p.access.clone(),
        capture: Some(settings),
    };
    let (state, gap, stop) = (state.clone(), Arc::clone(gap), stop.clone());
    Some(AbortOnDrop::spawn(async move {
        capture::supervise(&plan, state, gap, stop).await
    }))
}
