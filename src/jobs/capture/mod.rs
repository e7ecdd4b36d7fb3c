//! `lifeboat capture`: one watch over the whole keyspace, sealed into segments so that every
//! change is stored within `flush` of its arrival (deadline.rs; or at `segment_bytes`), with
//! lease polls, `HashKV` marks and clock marks, written to every destination (DESIGN.md
//! "Capture segments").

mod deadline;
mod start;
pub mod upload;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::format::capture::Record;
use crate::jobs::backup::Destination;
use crate::pipeline::encrypt::ReadBackKey;
use crate::source::etcd::capture::{Source, Watch, WatchAnswer};
use crate::source::etcd::ConnectConfig;
use crate::Result;
use upload::{Batch, Progress};

/// What capture reports while it runs (metrics) and when it ends.
#[derive(Debug, Default)]
pub struct CaptureMetrics {
    /// The newest revision received from the watch.
    pub captured_revision: AtomicI64,
    /// The newest revision etcd reported (watch headers, progress notifications).
    pub head_revision: AtomicI64,
    /// The revision stored in every destination.
    pub durable_revision: AtomicI64,
    /// Gaps recorded (revisions compacted before capture saw them).
    pub gaps: AtomicU64,
    /// Segment bytes stored, all destinations.
    pub bytes: AtomicU64,
    /// Segments stored, all destinations.
    pub segments: AtomicU64,
    /// When capture received the oldest change not yet stored in every destination (unix
    /// ms; 0: none).
    pub oldest_unstored_ms: AtomicI64,
}

impl CaptureMetrics {
    /// Seconds capture lags behind etcd: how long ago it received the oldest change that
    /// is not yet stored in every destination (0 when every destination holds them all).
    pub fn lag_seconds(&self) -> f64 {
        let d = self.durable_revision.load(Ordering::Relaxed);
        let h = self.head_revision.load(Ordering::Relaxed);
        let since = self.oldest_unstored_ms.load(Ordering::Relaxed);
        if d >= h || since == 0 {
            return 0.0;
        }
        ((now_ms() - since).max(0) as f64) / 1000.0
    }

    pub fn lag_revisions(&self) -> i64 {
        (self.head_revision.load(Ordering::Relaxed) - self.durable_revision.load(Ordering::Relaxed))
            .max(0)
    }
}

pub const DEFAULT_FLUSH: Duration = Duration::from_secs(1);
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
pub const DEFAULT_HASH_EVERY: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(30);
/// `[capture]` with defaults filled in and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    pub flush: Duration,
    pub segment_bytes: u64,
    pub hash_every: Duration,
    pub max_lag: Duration,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            flush: DEFAULT_FLUSH,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            hash_every: DEFAULT_HASH_EVERY,
            max_lag: DEFAULT_MAX_LAG,
        }
    }
}

pub struct CaptureOptions {
    pub conn: ConnectConfig,
    pub settings: CaptureSettings,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The records since the last seal.
struct Pending {
    first: i64,
    records: Vec<Record>,
    bytes: u64,
}

struct Capture {
    src: Source,
    opts: CaptureSettings,
    pending: Pending,
    /// The newest revision received (or skipped by a gap).
    last_rev: i64,
    known_leases: HashSet<i64>,
    last_hash: Option<Instant>,
    compact_seen: i64,
    senders: Vec<mpsc::Sender<Batch>>,
    progress: Vec<Arc<Progress>>,
    metrics: Arc<CaptureMetrics>,
    /// Sealed batches not yet stored everywhere: (last revision, when their first change
    /// arrived).
    unstored: std::sync::Mutex<std::collections::VecDeque<(i64, i64)>>,
    /// When the first pending (unsealed) change arrived.
    pending_since_ms: Option<i64>,
    /// Whether the lag beyond `max_lag` was logged (once per episode).
    lagging: bool,
    /// When the pending records must be sealed.
    timer: deadline::SealTimer,
}

/// Watch answers read at once after a seal, counted as waiting since it started.
const READY_AFTER_SEAL: u32 = 64;

/// Sleep until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Run capture until `stop` resolves: seal what was received, let every destination store
/// it, return. Fails only when it cannot start (no backup to start from, no endpoint).
pub async fn run(
    opts: &CaptureOptions,
    dests: &[Destination],
    metrics: Arc<CaptureMetrics>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mut src = Source::connect(&opts.conn).await?;
    let (cluster_id, head) = src.head().await?;
    let chains = start::chains(dests, cluster_id).await?;
    let start = chains
        .iter()
        .map(|c| c.next_first)
        .min()
        .unwrap_or(head + 1);
    let read_back = Arc::new(ReadBackKey::generate());
    let stopping = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut progress = Vec::new();
    let mut threads = Vec::new();
    for (d, chain) in dests.iter().zip(chains) {
        let (tx, p, h) = upload::spawn(
            d,
            cluster_id,
            chain,
            Arc::clone(&read_back),
            Arc::clone(&stopping),
        );
        senders.push(tx);
        progress.push(p);
        threads.push(h);
    }
    metrics.head_revision.store(head, Ordering::Relaxed);
    metrics
        .captured_revision
        .store(start - 1, Ordering::Relaxed);
    eprintln!(
        "lifeboat: capture of cluster {cluster_id:x} from revision {start} (etcd at {head}) via {} to {}",
        src.endpoint(),
        dests.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let mut c = Capture {
        src,
        opts: opts.settings.clone(),
        pending: Pending {
            first: start,
            records: Vec::new(),
            bytes: 0,
        },
        last_rev: start - 1,
        known_leases: HashSet::new(),
        last_hash: None,
        compact_seen: 0,
        senders,
        progress,
        metrics: Arc::clone(&metrics),
        unstored: Default::default(),
        pending_since_ms: None,
        lagging: false,
        timer: deadline::SealTimer::new(opts.settings.flush),
    };
    c.watch_loop(stop).await;
    c.seal().await;
    stopping.store(true, Ordering::Relaxed);
    c.senders.clear();
    let _ = crate::store::blocking::offload(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    c.update_metrics();
    Ok(())
}

impl Capture {
    async fn watch_loop(&mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // Only the lag check runs on a tick; seals run at their deadline (deadline.rs).
        let mut tick = tokio::time::interval(self.opts.flush);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = self.rewatch(0).await;
        // After a seal: answers the watch has ready at once were waiting since the seal
        // started (up to this many are read so).
        let mut waiting: Option<(Instant, u32)> = None;
        loop {
            self.take_store_times();
            let (answer, at) = match waiting.take() {
                Some((since, left)) => {
                    match tokio::time::timeout(Duration::ZERO, watch.next()).await {
                        Ok(a) => {
                            waiting = (left > 1).then_some((since, left - 1));
                            (a, since)
                        }
                        Err(_) => continue,
                    }
                }
                None => {
                    // Budgeted for a HashKV seal when one falls due before the seal can.
                    let hash_soon = self.hash_due_by(Instant::now() + self.opts.flush);
                    let deadline = self.timer.deadline(hash_soon);
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = sleep_until(deadline) => {
                            waiting = Some((self.seal().await, READY_AFTER_SEAL));
                            continue;
                        }
                        _ = tick.tick() => { self.check_lag(); continue; }
                        a = watch.next() => (a, Instant::now()),
                    }
                }
            };
            match answer {
                Ok(Some(WatchAnswer::Events { records, header })) => {
                    self.accept(records, header, at);
                    if self.pending.bytes >= self.opts.segment_bytes {
                        waiting = Some((self.seal().await, READY_AFTER_SEAL));
                    }
                }
                Ok(Some(WatchAnswer::Compacted { compact_revision })) => {
                    self.gap(compact_revision).await;
                    watch = self.rewatch(0).await;
                }
                Ok(Some(WatchAnswer::Cancelled(why))) => {
                    eprintln!("lifeboat: warning: capture: etcd {} cancelled the watch ({why}); watching again from revision {}", self.src.endpoint(), self.last_rev + 1);
                    watch = self.rewatch(1).await;
                }
                Ok(None) => {
                    eprintln!("lifeboat: warning: capture: etcd {} ended the watch; reconnecting from revision {}", self.src.endpoint(), self.last_rev + 1);
                    watch = self.rewatch(1).await;
                }
                Err(e) => {
                    eprintln!(
                        "lifeboat: warning: capture: {e}; reconnecting from revision {}",
                        self.last_rev + 1
                    );
                    watch = self.rewatch(1).await;
                }
            }
        }
    }

    /// Whether a seal now asks etcd for `HashKV`.
    fn hash_due(&self) -> bool {
        self.hash_due_by(Instant::now())
    }

    /// Whether a seal at `at` would ask etcd for `HashKV`.
    fn hash_due_by(&self, at: Instant) -> bool {
        self.last_hash
            .is_none_or(|t| at.saturating_duration_since(t) >= self.opts.hash_every)
    }

    /// What the destinations measured storing segments, for the seal deadline's budget.
    fn take_store_times(&mut self) {
        for p in &self.progress {
            for (took, with_hash) in p.take_took() {
                self.timer.stored(took, with_hash);
            }
        }
    }

    /// A watch from the revision after the last received one; with `attempt` > 0, on the
    /// next endpoint first. Retries (with back-off) until it has one.
    async fn rewatch(&mut self, mut attempt: u32) -> Watch {
        loop {
            if attempt > 0 {
                tokio::time::sleep(crate::source::etcd::backoff(attempt.min(6))).await;
                if let Err(e) = self.src.connect_next().await {
                    eprintln!("lifeboat: warning: capture: reconnect failed: {e}; trying again");
                    attempt += 1;
                    continue;
                }
            }
            match self.src.watch(self.last_rev + 1).await {
                Ok(w) => return w,
                Err(e) => {
                    eprintln!("lifeboat: warning: capture: watch from revision {}: {e}; trying another endpoint", self.last_rev + 1);
                    attempt += 1;
                }
            }
        }
    }

    /// New events: duplicates (a revision already received, after a reconnect) are dropped.
    fn accept(&mut self, records: Vec<Record>, header: i64, at: Instant) {
        let mut newest = self.last_rev;
        for r in records {
            let rev = r.revision();
            if rev <= self.last_rev {
                continue;
            }
            newest = newest.max(rev);
            self.pending_since_ms.get_or_insert_with(now_ms);
            self.timer.arrived(at);
            self.pending.bytes += record_bytes(&r);
            self.pending.records.push(r);
        }
        self.last_rev = newest;
        self.metrics
            .captured_revision
            .store(newest, Ordering::Relaxed);
        self.metrics
            .head_revision
            .fetch_max(header.max(newest), Ordering::Relaxed);
        self.update_metrics();
    }

    /// The watch start was compacted: seal what came before, and go on from the compact
    /// revision with a gap.
    async fn gap(&mut self, compact_revision: i64) {
        if compact_revision <= self.last_rev + 1 {
            return;
        }
        self.seal().await;
        eprintln!(
            "lifeboat: error: capture: revisions {}..{} were compacted before capture saw them: a gap in the chain (restores cannot cross it; take a full backup now: lifeboat backup --config FILE)",
            self.last_rev + 1,
            compact_revision - 1
        );
        self.metrics.gaps.fetch_add(1, Ordering::Relaxed);
        self.last_rev = compact_revision - 1;
        self.pending = Pending {
            first: compact_revision,
            records: Vec::new(),
            bytes: 0,
        };
    }

    /// Log when the lag crosses `max_lag` (once per episode) and when it is back under.
    fn check_lag(&mut self) {
        self.update_metrics();
        let lag = self.metrics.lag_seconds();
        if lag > self.opts.max_lag.as_secs_f64() && !self.lagging {
            self.lagging = true;
            eprintln!(
                "lifeboat: warning: capture lags {lag:.0}s behind etcd ({} revisions; [capture] max_lag is {}): a destination is slow or unreachable",
                self.metrics.lag_revisions(),
                humantime::format_duration(self.opts.max_lag)
            );
        } else if lag <= self.opts.max_lag.as_secs_f64() && self.lagging {
            self.lagging = false;
            eprintln!("lifeboat: capture caught up (lag {lag:.0}s)");
        }
    }

    /// Seal the pending records (when there are any): lease changes, a HashKV mark when one
    /// is due, a clock mark, then hand the batch to every destination. Returns when it
    /// started.
    async fn seal(&mut self) -> Instant {
        let started = Instant::now();
        self.check_lag();
        if self.last_rev < self.pending.first {
            self.timer.sealed();
            return started;
        }
        let last = self.last_rev;
        let mut records = std::mem::take(&mut self.pending.records);
        self.poll_leases(&mut records, last).await;
        let with_hash = self.hash_due();
        if with_hash {
            match self.src.hash_kv(last).await {
                Ok((hash, compact)) => {
                    if compact > self.compact_seen {
                        records.push(Record::Compact {
                            compact_revision: compact,
                            revision: last,
                        });
                        self.compact_seen = compact;
                    }
                    records.push(Record::LiveHash {
                        revision: last,
                        hash,
                        compact_revision: compact,
                    });
                    self.last_hash = Some(Instant::now());
                }
                Err(e) => {
                    eprintln!("lifeboat: warning: capture: no HashKV mark at revision {last}: {e}")
                }
            }
        }
        let sealed_ms = now_ms();
        let since = self.pending_since_ms.take().unwrap_or(sealed_ms);
        self.unstored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((last, since));
        records.push(Record::Clock {
            revision: last,
            unix_ms: sealed_ms,
        });
        let records = Arc::new(records);
        for tx in &self.senders {
            let b = Batch {
                first: self.pending.first,
                last,
                records: Arc::clone(&records),
                sealed_ms,
                started,
                with_hash,
            };
            // A full queue waits here (etcd buffers the watch meanwhile).
            let _ = tx.send(b).await;
        }
        self.pending = Pending {
            first: last + 1,
            records: Vec::new(),
            bytes: 0,
        };
        self.timer.sealed();
        started
    }

    /// Leases granted or revoked since the last poll. A grant goes right before the first
    /// put attached to it in this batch (or at the end), a revoke at the end.
    async fn poll_leases(&mut self, records: &mut Vec<Record>, last: i64) {
        let ids = match self.src.leases().await {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("lifeboat: warning: capture: lease list at revision {last} failed: {e}; lease changes are recorded at the next seal");
                return;
            }
        };
        let now: HashSet<i64> = ids.iter().copied().collect();
        let mut grants = Vec::new();
        for id in ids.iter().filter(|id| !self.known_leases.contains(id)) {
            let ttl = self.src.granted_ttl(*id).await.ok().flatten().unwrap_or(0);
            grants.push((*id, ttl));
        }
        // Leases attached to puts of this batch but already gone: granted and revoked
        // between two polls.
        for r in records.iter() {
            if let Record::Put(kv) = r {
                if kv.lease != 0
                    && !now.contains(&kv.lease)
                    && !self.known_leases.contains(&kv.lease)
                    && !grants.iter().any(|g| g.0 == kv.lease)
                {
                    grants.push((kv.lease, 0));
                }
            }
        }
        let mut revokes: Vec<i64> = self.known_leases.difference(&now).copied().collect();
        revokes.sort_unstable();
        let mut out = Vec::with_capacity(records.len() + grants.len() + revokes.len());
        for r in records.drain(..) {
            if let Record::Put(kv) = &r {
                if let Some(i) = grants.iter().position(|g| g.0 == kv.lease) {
                    let (id, ttl) = grants.swap_remove(i);
                    out.push(Record::LeaseGrant {
                        id,
                        ttl,
                        revision: kv.mod_revision,
                    });
                    if !now.contains(&id) {
                        revokes.push(id);
                    }
                }
            }
            out.push(r);
        }
        for (id, ttl) in grants {
            out.push(Record::LeaseGrant {
                id,
                ttl,
                revision: last,
            });
        }
        for id in revokes {
            out.push(Record::LeaseRevoke { id, revision: last });
        }
        *records = out;
        self.known_leases = now;
    }

    fn update_metrics(&self) {
        let durable = self
            .progress
            .iter()
            .map(|p| p.durable.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let m = &self.metrics;
        m.durable_revision.store(durable, Ordering::Relaxed);
        m.bytes.store(
            self.progress
                .iter()
                .map(|p| p.bytes.load(Ordering::Relaxed))
                .sum(),
            Ordering::Relaxed,
        );
        m.segments.store(
            self.progress
                .iter()
                .map(|p| p.segments.load(Ordering::Relaxed))
                .sum(),
            Ordering::Relaxed,
        );
        // Sealed batches are stored in order: drop those every destination holds.
        let mut unstored = self.unstored.lock().unwrap_or_else(|p| p.into_inner());
        while unstored.front().is_some_and(|(last, _)| *last <= durable) {
            unstored.pop_front();
        }
        let oldest = unstored
            .front()
            .map(|(_, since)| *since)
            .or(self.pending_since_ms)
            .unwrap_or(0);
        m.oldest_unstored_ms.store(oldest, Ordering::Relaxed);
    }
}

/// Roughly what a record takes in a segment (for `segment_bytes`).
fn record_bytes(r: &Record) -> u64 {
    match r {
        Record::Put(kv) => (kv.key.len() + kv.value.len() + 16) as u64,
        Record::Delete { key, .. } => (key.len() + 4) as u64,
        _ => 16,
    }
}
