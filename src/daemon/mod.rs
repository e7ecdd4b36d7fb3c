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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::catalog::retention::Policy;
use crate::config::Layers;
use crate::error::EtcdErrorKind;
use crate::jobs::backup::{backup, BackupOptions, Destination, NoProgress};
use crate::{Error, Result};

pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Everything one slot needs, rebuilt from the config on SIGHUP.
pub struct Plan {
    pub every: Duration,
    pub jitter: Duration,
    pub leader_only: bool,
    pub opts: BackupOptions,
    pub dests: Vec<Destination>,
    pub policy: Option<Policy>,
    pub textfile: Option<PathBuf>,
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
    let every = match (&schedule.cron, schedule.every) {
        (_, Some(e)) if e.0 >= Duration::from_secs(1) => e.0,
        (Some(c), _) => {
            return Err(Error::flag(
                "--config",
                format!("[schedule] cron = {c:?}: cron schedules are not supported by this build yet; use every = \"1h\""),
            ))
        }
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
        every,
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
        listen: match file.and_then(|c| c.metrics.as_ref()?.listen.clone()) {
            None => None,
            Some(l) => Some(l.parse().map_err(|_| {
                Error::flag(
                    "--config",
                    format!("[metrics] listen = {l:?}: not an address (e.g. 127.0.0.1:9477)"),
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

/// Time to the start of the next slot, plus jitter (a cheap per-process pseudo-random
/// fraction; it only spreads load, nothing depends on its quality).
fn until_next_slot(every: Duration, jitter: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let every_ns = every.as_nanos().max(1);
    let into = now.as_nanos() % every_ns;
    let wait = Duration::from_nanos((every_ns - into) as u64);
    if jitter.is_zero() {
        return wait;
    }
    let seed =
        (now.as_nanos() as u64 ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    wait + Duration::from_nanos(seed % (jitter.as_nanos() as u64).max(1))
}

/// Whether the local member (the first endpoint) is the leader; `Err` when it cannot tell.
async fn local_is_leader(opts: &BackupOptions) -> Result<(bool, String)> {
    let endpoint = opts
        .conn
        .endpoints
        .first()
        .cloned()
        .ok_or_else(|| Error::flag("--endpoints", "no endpoint"))?;
    let mut client = opts.conn.connect_one(&endpoint, false).await?;
    let status = tokio::time::timeout(opts.conn.command_timeout, client.status())
        .await
        .map_err(|_| Error::Etcd {
            endpoint: endpoint.clone(),
            kind: EtcdErrorKind::Timeout,
            message: "status: no answer".into(),
        })?
        .map_err(|e| crate::source::etcd::errors::classify(&opts.conn, &endpoint, "status", &e))?;
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
        match local_is_leader(&p.opts).await {
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
    let deadline = tokio::time::Instant::now() + p.every;
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
    let dests: Vec<Destination> = p
        .dests
        .iter()
        .map(|d| Destination {
            name: d.name.clone(),
            store: d.store.clone(),
            encryption: d.encryption.clone(),
        })
        .collect();
    let policy = p.policy.clone();
    let lock = p.opts.lock_timeout;
    let textfile = p.textfile.clone();
    let state = state.clone();
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

/// Render the metrics after a run (counters carried from the last render, or from the
/// textfile after a restart), serve them, and write the textfile if configured. Blocks.
fn publish(
    state: &http::State,
    textfile: Option<&std::path::Path>,
    rows: &[(&Destination, Option<&'static str>, u64)],
    attempt: f64,
) {
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
    let text = crate::metrics::render(&ms, &crate::metrics::previous_counters(&previous));
    if let Some(path) = textfile {
        if let Err(e) = crate::metrics::write_textfile(path, &text) {
            tracing::error!("metrics textfile: {e}");
        }
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.metrics = text;
    s.last_success = last_success;
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
        let max_age = |p: &Plan| 2.0 * p.every.as_secs_f64() + grace.as_secs_f64();
        state.lock().unwrap_or_else(|p| p.into_inner()).max_age = max_age(&p);
        {
            let dests: Vec<Destination> = p
                .dests
                .iter()
                .map(|d| Destination {
                    name: d.name.clone(),
                    store: d.store.clone(),
                    encryption: d.encryption.clone(),
                })
                .collect();
            let (st, tf) = (state.clone(), p.textfile.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let rows: Vec<_> = dests.iter().map(|d| (d, None, 0)).collect();
                publish(&st, tf.as_deref(), &rows, 0.0);
            })
            .await;
        }
        let _listener = match p.listen {
            None => None,
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    Error::flag("--config", format!("[metrics] listen = {addr}: {}", crate::error::io_words(&e)))
                })?;
                tracing::info!(%addr, "serving /metrics and /healthz");
                Some(AbortOnDrop(tokio::spawn(http::serve(l, state.clone()))))
            }
        };
        tracing::info!(every = %humantime::format_duration(p.every), leader_only = p.leader_only, destinations = p.dests.len(), "scheduler started");
        loop {
            let mut reload = false;
            tokio::select! {
                _ = tokio::time::sleep(until_next_slot(p.every, p.jitter)) => {
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

/// Stops the listener task when the scheduler stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
