//! `backup`: one backup of a live cluster into one or more stores.
//!
//! ```text
//! survey endpoints ─▶ choose member ─▶ Maintenance.Snapshot ─(bounded channel)─▶
//!   trailer split + SHA-256 ─▶ framed zstd (worker threads) ─▶ tee ─▶ store writers
//! ─▶ commit objects ─▶ read revision/term/index from the stored object ─▶ re-verify
//! ─▶ write manifest (the backup now exists)
//! ```
//!
//! A stream that breaks (member killed, leader change, stall) is retried from scratch on
//! the next healthy member after a back-off, up to `retries` times. A digest mismatch is
//! not retried: it fails the backup as an integrity problem. Only errors that another try
//! can fix ([`Error::is_transient`]: refused, timeouts, broken streams) are retried; TLS,
//! auth and permission errors fail at once. Nothing is listed until the manifest is
//! written, and every failure path removes the partial objects.
//!
//! Destinations succeed or fail on their own (fan-out): one that cannot be locked,
//! cleaned or created (a missing bucket, a full disk) drops out before streaming, one
//! whose writer fails mid-stream is dropped by the tee, one whose commit or read-back
//! fails is removed again; the others still get the backup, and [`BackupOutcome`] says
//! which failed and why.
//!
//! Store methods block (see [`crate::store`]): every store call here (locks, clean-up,
//! create, commit, read-back, manifest) runs on a blocking thread, never on a runtime
//! worker.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::catalog::{self, Manifest};
use crate::pipeline::encrypt::{Encryption, ReadBackKey, StoredDigest};
use crate::pipeline::{FrameOptions, SinkResult, SnapshotSink};
use crate::source::etcd::{
    self, backoff, choose, survey, warnings, Choice, ConnectConfig, SourcePolicy, StreamEvent,
};
use crate::store::retry::{RetryPolicy, RetryStore};
use crate::store::tee::Tee;
use crate::store::{ObjectWriter, Store, StoreLock};

pub use super::readback::{check_database, read_facts, DbFacts};

/// How long a backup waits for another run's writer lock on a destination by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
use crate::{Error, Result};

mod finish;
use finish::{finish_all, Run};

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub conn: ConnectConfig,
    pub source: SourcePolicy,
    /// Further attempts after a broken stream.
    pub retries: u32,
    pub frames: FrameOptions,
    /// Cap on the streaming rate, bytes per second (spares the member's disk and network).
    pub rate_limit: Option<u64>,
    /// How long to wait for the next stream message before calling the stream broken.
    pub stream_idle_timeout: Duration,
    /// How much of every stored object to read back before its manifest is written.
    pub read_back: ReadBack,
    /// How long to wait for another run's writer lock on a destination.
    pub lock_timeout: Duration,
}

/// What the backup reads back from the store before it writes the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadBack {
    /// Only the seek table and the database pages the manifest's facts come from.
    Facts,
    /// Also every stored byte, against the SHA-256 computed while writing (the default).
    Digest,
    /// Also decode every frame and check its zstd checksum (what `verify` does, less the
    /// database SHA-256, which was computed in flight over the very bytes compressed).
    Full,
}

/// A named store to back up into. Cloning gives another handle on the same store (stores
/// are shared between tasks).
#[derive(Clone)]
pub struct Destination {
    pub name: String,
    /// Shared, so that store calls can run on blocking threads.
    pub store: Arc<dyn Store>,
    /// Store the data object encrypted to these recipients (age), or plain.
    pub encryption: Option<Arc<Encryption>>,
    /// The keys that open its encrypted backups (the daemon's scrub reads them back).
    pub keys: catalog::Keys,
}

impl Destination {
    /// The destination as a repository of backups, to read them back.
    pub fn repository(&self) -> catalog::Repository {
        catalog::Repository::new(&self.name, Arc::clone(&self.store), self.keys.clone())
    }
}

/// Progress reporting, implemented by the CLI (a bar on a TTY) or nothing.
pub trait Progress: Send + Sync {
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    fn set(&self, _done: u64) {}
    fn end(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// What happened, per destination.
#[derive(Debug)]
pub struct BackupOutcome {
    pub stored: Vec<(String, Manifest)>,
    pub failed: Vec<(String, Error)>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Messages (32 KiB each from etcd) buffered between the gRPC stream and the pipeline:
/// 4 MiB lets the member keep sending (and reading its disk) while a compression frame
/// is being handed over, without letting memory grow with the database.
const STREAM_BUFFER_MESSAGES: usize = 128;

enum AttemptError {
    /// Worth another try on another member.
    Retry(Error),
    /// Retrying will not help.
    Fatal(Error),
}

struct Streamed {
    tee: Tee,
    result: SinkResult,
    started: OffsetDateTime,
    /// `SnapshotResponse.version` (empty before etcd 3.6).
    storage_version: String,
}

async fn attempt(
    opts: &BackupOptions,
    choice: &Choice,
    writers: Vec<(usize, String, Box<dyn ObjectWriter>)>,
    progress: Arc<dyn Progress>,
) -> std::result::Result<Streamed, AttemptError> {
    let started = now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<StreamEvent>(STREAM_BUFFER_MESSAGES);
    let frames = opts.frames;
    let tee = Tee::new(writers);
    let prog = Arc::clone(&progress);
    let what = format!("snapshot from {}", choice.name);
    let storage_version = Arc::new(std::sync::Mutex::new(String::new()));
    let reported = Arc::clone(&storage_version);
    let sink = tokio::task::spawn_blocking(move || -> (io::Result<(Tee, SinkResult)>, u64) {
        let mut expected = 0;
        let mut sink = match SnapshotSink::new(tee, frames) {
            Ok(s) => s,
            Err(e) => return (Err(e), 0),
        };
        let mut got = 0u64;
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                StreamEvent::Start {
                    expected_db_len,
                    storage_version,
                } => {
                    expected = expected_db_len;
                    if let Ok(mut v) = reported.lock() {
                        *v = storage_version;
                    }
                    prog.begin(&what, Some(expected_db_len));
                }
                StreamEvent::Data(chunk) => {
                    got += chunk.len() as u64;
                    if let Err(e) = sink.push(&chunk) {
                        return (Err(e), expected);
                    }
                    prog.set(got);
                }
            }
        }
        (sink.finish(), expected)
    });
    let streamed = etcd::stream_snapshot(
        &opts.conn,
        &choice.endpoint,
        &choice.name,
        opts.stream_idle_timeout,
        opts.rate_limit,
        tx,
    )
    .await;
    let (sunk, expected) = sink
        .await
        .map_err(|e| AttemptError::Fatal(Error::Failed(format!("pipeline thread: {e}"))))?;
    progress.end();
    match (streamed, sunk) {
        // The tee's message names every destination and why it failed.
        (_, Err(e)) => Err(AttemptError::Fatal(Error::Failed(e.to_string()))),
        (Err(e), Ok((tee, _))) => {
            abort(tee).await;
            Err(AttemptError::Retry(e))
        }
        (Ok(_), Ok((tee, result))) => {
            let split = &result.split;
            if split.trailer.is_none() || (expected > 0 && split.db_len < expected) {
                abort(tee).await;
                return Err(AttemptError::Retry(Error::Etcd {
                    endpoint: choice.endpoint.clone(),
                    kind: crate::error::EtcdErrorKind::Broken,
                    message: format!(
                        "snapshot stream ended early: {} database bytes of {expected} announced",
                        split.db_len
                    ),
                }));
            }
            if !split.trailer_matches() {
                abort(tee).await;
                return Err(AttemptError::Fatal(Error::integrity(
                    format!("snapshot stream from {}", choice.endpoint),
                    format!(
                        "SHA-256 of the {} database bytes is {}, etcd's trailer says {}",
                        split.db_len,
                        hex::encode(split.db_sha256),
                        split.trailer.map(hex::encode).unwrap_or_default()
                    ),
                )));
            }
            if expected > 0 && split.db_len != expected {
                abort(tee).await;
                return Err(AttemptError::Fatal(Error::integrity(
                    format!("snapshot stream from {}", choice.endpoint),
                    format!(
                        "{} database bytes arrived, {expected} were announced",
                        split.db_len
                    ),
                )));
            }
            let storage_version = storage_version
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default();
            Ok(Streamed {
                tee,
                result,
                started,
                storage_version,
            })
        }
    }
}

/// Abort every output of a tee on a blocking thread (it removes partial objects).
async fn abort(tee: Tee) {
    let _ = tokio::task::spawn_blocking(move || tee.abort()).await;
}

/// Run blocking store work off the runtime's workers (see the module docs).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Failed(format!("store thread: {e}")))?
}

/// Lock every destination (in one global order), then remove what killed runs left. Each
/// destination succeeds or fails on its own (a missing bucket must not cost the local
/// copy): failures come back by index; only a store given twice fails the whole run.
#[allow(clippy::type_complexity)]
fn prepare(
    dests: &[(String, Arc<dyn Store>)],
    wait: Duration,
) -> Result<(Vec<Box<dyn StoreLock>>, Vec<(usize, Error)>)> {
    let labelled: Vec<(String, &dyn Store)> = dests
        .iter()
        .map(|(name, s)| (format!("--to {name}"), s.as_ref()))
        .collect();
    let mut locks = Vec::new();
    let mut failed = Vec::new();
    let mut locked = Vec::new();
    for (i, lock) in crate::store::lock_each_in_order(&labelled, wait)? {
        match lock {
            Ok(l) => {
                locks.push(l);
                locked.push(i);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    // Each destination cleans on its own thread: a hung server fails at its deadline
    // without holding up the others.
    let cleaned = each(locked, |i| {
        let (name, store) = &dests[i];
        clean(name, store.as_ref())
    });
    for (i, r) in cleaned {
        if let Err(e) = r {
            failed.push((i, e));
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    Ok((locks, failed))
}

/// `f` of every item, each on its own thread (stores block, and one destination's slow or
/// hung server must not hold up the others); results in the items' order.
pub(super) fn each<I: Send + Copy, T: Send>(
    items: Vec<I>,
    f: impl Fn(I) -> T + Sync,
) -> Vec<(I, T)> {
    if items.len() <= 1 {
        return items.into_iter().map(|i| (i, f(i))).collect();
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .into_iter()
            .map(|i| (i, s.spawn(move || f(i))))
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| (i, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
            .collect()
    })
}

/// Remove the partial objects and orphaned data objects of runs that did not finish.
fn clean(name: &str, store: &dyn Store) -> Result<()> {
    for p in store.clean_partials()? {
        tracing::info!("removed {p} from {name}: left by a run that did not finish");
    }
    for o in catalog::orphans(store)? {
        tracing::info!(
            "removed {o} from {name}: a data object without manifest (a run that did not finish)"
        );
        store.remove(&o)?;
    }
    Ok(())
}

/// The outcome when no destination is left to write to: every one failed before streaming.
fn nothing_stored(
    stores: &[(String, Arc<dyn Store>)],
    failed: Vec<Option<Error>>,
) -> BackupOutcome {
    BackupOutcome {
        stored: Vec::new(),
        failed: failed
            .into_iter()
            .zip(stores)
            .filter_map(|(e, (name, _))| Some((name.clone(), e?)))
            .collect(),
    }
}

/// Take one backup into every destination.
pub async fn backup(
    opts: &BackupOptions,
    dests: &[Destination],
    progress: Arc<dyn Progress>,
) -> Result<BackupOutcome> {
    if dests.is_empty() {
        return Err(Error::Usage("no destination: give --to DIR".into()));
    }
    opts.conn.validate()?;
    let t0 = Instant::now();
    // Every store call goes through the retry wrapper: transient failures (a timeout,
    // throttling) are retried with back-off, the rest fail at once.
    let stores: Vec<(String, Arc<dyn Store>)> = dests
        .iter()
        .map(|d| {
            let retrying = RetryStore::new(Arc::clone(&d.store), RetryPolicy::default());
            (d.name.clone(), Arc::new(retrying) as Arc<dyn Store>)
        })
        .collect();
    // Writer locks for the whole run; with them held, debris of killed runs can go.
    let wait = opts.lock_timeout;
    let prepared = stores.clone();
    let (_locks, early) = blocking(move || prepare(&prepared, wait)).await?;
    // Why each destination dropped out before streaming (`None`: still in the run).
    let mut failed: Vec<Option<Error>> = stores.iter().map(|_| None).collect();
    for (i, e) in early {
        tracing::debug!("destination {} left out: {e}", stores[i].0);
        failed[i] = Some(e);
    }
    if failed.iter().all(Option::is_some) {
        return Ok(nothing_stored(&stores, failed));
    }

    // Encrypted objects are also encrypted to a key of this run alone, so that they can be
    // read back before the manifest is written (see crate::pipeline::encrypt).
    let encryptions: Vec<Option<Arc<Encryption>>> =
        dests.iter().map(|d| d.encryption.clone()).collect();
    let read_back = Arc::new(ReadBackKey::generate());
    let mut failed_members: Vec<u64> = Vec::new();
    let mut attempt_no = 0u32;
    let mut id: Option<String> = None;
    let (view, choice, streamed, digests) = loop {
        attempt_no += 1;
        let view = match survey(&opts.conn).await {
            Ok(v) => v,
            Err(e) if e.is_transient() && attempt_no <= opts.retries => {
                tracing::warn!("{e}; retrying in {:?}", backoff(attempt_no));
                tokio::time::sleep(backoff(attempt_no)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::debug!("survey done after {:?}", t0.elapsed());
        for w in warnings(&view) {
            tracing::warn!("{w}");
        }
        let choice = choose(&view, &opts.source, &failed_members)?;
        tracing::info!(
            "streaming from member {} ({:x}) at {}: {}",
            choice.name,
            choice.member_id,
            choice.endpoint,
            choice.reason
        );
        let cluster_id = view.cluster_id.unwrap_or(0);
        let id = id
            .get_or_insert_with(|| catalog::new_backup_id(now(), cluster_id))
            .clone();
        let targets: Vec<(usize, String, Arc<dyn Store>)> = stores
            .iter()
            .enumerate()
            .filter(|(i, _)| failed[*i].is_none())
            .map(|(i, (name, store))| (i, name.clone(), Arc::clone(store)))
            .collect();
        let object = catalog::data_name(&id);
        let size_hint = view
            .endpoints
            .iter()
            .find(|s| s.member_id == choice.member_id)
            .and_then(|s| u64::try_from(s.db_size).ok());
        let (encs, key) = (encryptions.clone(), Arc::clone(&read_back));
        let created = blocking(move || {
            let made = each((0..targets.len()).collect(), |t| {
                let (i, _, store) = &targets[t];
                store
                    .create_sized(&object, size_hint)
                    .and_then(|w| match &encs[*i] {
                        Some(enc) => {
                            let at = format!("{}/{object}", store.location());
                            enc.wrap(w, &key, &at).map(|(w, d)| (w, Some(d)))
                        }
                        None => Ok((w, None)),
                    })
            });
            Ok(targets
                .into_iter()
                .zip(made)
                .map(|((i, name, _), (_, made))| (i, name, made))
                .collect::<Vec<_>>())
        })
        .await?;
        let mut writers = Vec::new();
        let mut digests: Vec<Option<StoredDigest>> = stores.iter().map(|_| None).collect();
        for (i, name, made) in created {
            match made {
                Ok((w, digest)) => {
                    digests[i] = digest;
                    writers.push((i, name, w));
                }
                Err(e) => {
                    tracing::debug!("destination {name} left out: {e}");
                    failed[i] = Some(e);
                }
            }
        }
        if writers.is_empty() {
            return Ok(nothing_stored(&stores, failed));
        }
        match attempt(opts, &choice, writers, Arc::clone(&progress)).await {
            Ok(s) => {
                tracing::debug!("stream done after {:?}", t0.elapsed());
                break (view, choice, s, digests);
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry(e)) if e.is_transient() && attempt_no <= opts.retries => {
                let wait = backoff(attempt_no);
                tracing::warn!(
                    "attempt {attempt_no} failed: {e}; trying again in {wait:?} ({} left)",
                    opts.retries + 1 - attempt_no
                );
                failed_members.push(choice.member_id);
                tokio::time::sleep(wait).await;
            }
            Err(AttemptError::Retry(e)) if !e.is_transient() => return Err(e),
            Err(AttemptError::Retry(e)) => {
                return Err(Error::Failed(format!(
                    "backup failed after {attempt_no} attempt(s); last: {e}"
                )))
            }
        }
    };
    let id = id.unwrap_or_default();
    let mut warns = warnings(&view);
    if attempt_no > 1 {
        warns.push(format!(
            "took {attempt_no} attempts; earlier streams broke (members tried first: {})",
            failed_members
                .iter()
                .map(|m| format!("{m:x}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let run = Run {
        storage_version: Some(streamed.storage_version.clone()).filter(|v| !v.is_empty()),
        opts: opts.clone(),
        id,
        view,
        choice,
        attempts: attempt_no,
        warns,
        t0,
        encryptions,
        read_back,
        digests,
    };
    let outcome = blocking(move || Ok(finish_all(&run, &stores, streamed, failed))).await?;
    drop(_locks);
    Ok(outcome)
}
