//! `lifeboat run`: the scheduler daemon (first cut: `every` schedules, leader-only slots,
//! retries, prune after success, textfile metrics, clean shutdown, SIGHUP reload).
//!
//! Slots are multiples of `every` since the Unix epoch, so daemons on every control-plane
//! node agree on them; with `when = "leader"` only the one whose local member leads backs up
//! in a slot. A failed backup is retried with a doubling back-off (1 s, 2 s, ... 60 s) until
//! the next slot. On SIGTERM/SIGINT an in-flight backup gets `shutdown_grace` to finish;
//! after that it is dropped, which leaves at most a partial object (never a manifest), and
//! the next backup cleans it up.

pub mod http;
pub mod schedule;
pub mod scrubber;
pub mod units;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::catalog::retention::Policy;
use crate::config::Layers;
use crate::error::EtcdErrorKind;
use crate::jobs::backup::{backup, BackupOptions, Destination, NoProgress};
use crate::{Error, Result};
pub use schedule::Schedule;

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
}

/// Build the daemon's plan from the merged settings. `open` opens a destination (the CLI
/// passes `store::open_destination`).
pub fn plan(
    layers: &Layers,
    open: &dyn Fn(&str) -> Result<Box<dyn crate::store::Store>>,
) -> Result<Plan> {
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
            store: open(&d)?.into(),
            name: d,
            encryption,
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
    })
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleep until the next slot (plus jitter); forever when the schedule has no future slot
/// (signals still stop or reload the daemon).
async fn sleep_until_slot(p: &Plan) {
    match schedule::until_next_slot(&p.schedule, p.jitter) {
        Some(d) => tokio::time::sleep(d).await,
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

/// One slot: the leader check, then the backup with retries until `deadline`. Returns
/// `true` when a stop signal arrived.
async fn slot(
    p: &Plan,
    state: &http::State,
    sig: &mut Signals,
    grace: Duration,
    reload: &mut bool,
) -> bool {
    if p.leader_only {
        match local_is_leader(&p.opts.conn).await {
            Ok((true, _)) => {}
            Ok((false, leader)) => {
                tracing::info!(leader = %leader, "skipped: the local member is not the leader (schedule.when = \"leader\")");
                return false;
            }
            Err(e) => {
                tracing::warn!("skipped: cannot tell whether the local member leads: {e}");
                return false;
            }
        }
    }
    // Retries stop when the next slot starts (that slot gets its own attempt).
    let deadline = tokio::time::Instant::now()
        + schedule::until_next_slot(&p.schedule, Duration::ZERO).unwrap_or(p.schedule.interval());
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = unix_now();
        let run = backup(&p.opts, &p.dests, Arc::new(NoProgress));
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break Some(r),
                s = sig.next() => match s {
                    Stop::Hup => *reload = true,
                    Stop::Term => {
                        tracing::info!(grace = %humantime::format_duration(grace), "stopping: waiting for the backup in flight");
                        match tokio::time::timeout(grace, &mut run).await {
                            Ok(r) => { record(p, state, attempt, &r).await; }
                            Err(_) => tracing::warn!("backup aborted at shutdown; nothing was listed"),
                        }
                        return true;
                    }
                },
            }
        };
        let Some(r) = result else { return false };
        let ok = record(p, state, attempt, &r).await;
        if ok || tokio::time::Instant::now() + backoff >= deadline {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            s = sig.next() => match s { Stop::Term => return true, Stop::Hup => *reload = true },
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Log, prune, write metrics for one attempt; `true` when the backup stored everywhere.
async fn record(
    p: &Plan,
    state: &http::State,
    attempt: f64,
    r: &Result<crate::jobs::backup::BackupOutcome>,
) -> bool {
    let empty = crate::jobs::backup::BackupOutcome {
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
    let stored_everywhere = r.is_ok() && outcome.failed.is_empty();
    // The failed stage of each destination, from the typed errors (the copies handed to
    // the blocking thread below only carry their text).
    let failed_stages: Vec<Option<&'static str>> = p
        .dests
        .iter()
        .map(|d| {
            outcome
                .failed
                .iter()
                .find(|(n, _)| *n == d.name)
                .map(|(_, e)| crate::metrics::stage_of(e))
        })
        .collect();
    let outcome = match r {
        Ok(o) => crate::jobs::backup::BackupOutcome {
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
            .map(|((d, r), f)| (d, all_stage.or(*f).or(r.stage), r.pruned))
            .collect();
        publish(&state, textfile.as_deref(), &rows, attempt);
    })
    .await;
    stored_everywhere
}

/// The cluster's backend quota: etcd's own `etcd_server_quota_backend_bytes` from the
/// first endpoint that serves it, else `[etcd] quota_bytes` (default etcd's 2 GiB), with a
/// warning the first time. Blocks.
fn cluster_quota(conn: &crate::source::etcd::ConnectConfig, fallback: u64) -> u64 {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let mut last = None;
    for ep in &conn.endpoints {
        match crate::source::etcd::quota::quota_bytes(conn, ep) {
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
/// `attempt` 0: no backup attempt now (start-up, a scrub); the last one is kept.
fn publish(
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
    let ms: Vec<_> = rows
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

/// Run until SIGTERM/SIGINT. `load` re-reads the config (initially and on SIGHUP); a
/// reload that fails keeps the running plan and logs why.
pub fn run(load: &dyn Fn() -> Result<Plan>, grace: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("runtime: {e}")))?;
    let mut p = load()?;
    let state: http::State = Default::default();
    rt.block_on(async {
        let mut sig = Signals::new()?;
        // The state before the first slot: what the destinations hold now.
        let max_age = |p: &Plan| 2.0 * p.schedule.interval().as_secs_f64() + grace.as_secs_f64();
        state.lock().unwrap_or_else(|p| p.into_inner()).max_age = max_age(&p);
        {
            let dests: Vec<Destination> = p.dests.to_vec();
            let (st, tf) = (state.clone(), p.textfile.clone());
            let (conn, fallback) = (p.opts.conn.clone(), p.quota_fallback);
            let _ = tokio::task::spawn_blocking(move || {
                let quota = cluster_quota(&conn, fallback);
                st.lock().unwrap_or_else(|p| p.into_inner()).cluster.quota_bytes = Some(quota);
                let rows: Vec<_> = dests.iter().map(|d| (d, None, 0)).collect();
                publish(&st, tf.as_deref(), &rows, 0.0);
            })
            .await;
        }
        let _listener = match p.listen {
            None => None,
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    Error::flag("--config", format!("[metrics] listen = {addr}: {} (set [metrics] listen to a free address, or \"off\")", crate::error::io_words(&e)))
                })?;
                tracing::info!(%addr, "serving /metrics and /healthz");
                Some(AbortOnDrop(tokio::spawn(http::serve(l, state.clone()))))
            }
        };
        tracing::info!(schedule = %p.schedule.describe(), leader_only = p.leader_only, destinations = p.dests.len(), "scheduler started");
        let mut _scrubber = start_scrubber(&p, &state);
        loop {
            let mut reload = false;
            tokio::select! {
                _ = sleep_until_slot(&p) => {
                    if slot(&p, &state, &mut sig, grace, &mut reload).await {
                        break;
                    }
                }
                s = sig.next() => match s {
                    Stop::Term => break,
                    Stop::Hup => reload = true,
                },
            }
            if reload {
                match load() {
                    Ok(n) => {
                        p = n;
                        _scrubber = start_scrubber(&p, &state);
                        state.lock().unwrap_or_else(|p| p.into_inner()).max_age = max_age(&p);
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                }
            }
        }
        tracing::info!("scheduler stopped");
        Ok(())
    })
}

/// The scrubbing rotation's task, if `[verify] every` is set (restarted on reload).
fn start_scrubber(p: &Plan, state: &http::State) -> Option<AbortOnDrop> {
    let s = p.scrub?;
    tracing::info!(every = %humantime::format_duration(s.every), budget = s.budget, "scrubbing on a rotation");
    let dests = p.dests.to_vec();
    // With when = "leader" only the leader's daemon scrubs: the daemons on the other
    // members would re-read the same shared destination at the same instant.
    let leader = p.leader_only.then(|| p.opts.conn.clone());
    Some(AbortOnDrop(tokio::spawn(scrubber::rotate(
        s,
        dests,
        leader,
        state.clone(),
        p.textfile.clone(),
    ))))
}

/// Stops a task (the listener, the scrubber) when the scheduler stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
