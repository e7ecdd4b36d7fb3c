//! `backup`: one backup of a live cluster into one or more stores.
//!
//! ```text
//! survey endpoints ─▶ choose member ─▶ Maintenance.Snapshot ─(bounded channel)─▶
//!   trailer split + SHA-256 ─▶ framed zstd (worker threads) ─▶ tee ─▶ [age, own thread]
//!   ─▶ store writers ─▶ commit objects ─▶ read revision/term/index from the stored object
//! ─▶ re-verify (+ hashkv, once per run) ─▶ write manifest (the backup now exists)
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
//! Each destination is one [`Target`] through the run, and the run is three phases:
//! [`prepare`] (retry wrapper, locks, clean-up), [`stream`] (survey, choose, create each
//! target's object, stream, retry) and [`finish`] (commit, read back, manifest).
//!
//! Store methods block (see [`crate::store`]): every store call here (locks, clean-up,
//! create, commit, read-back, manifest) runs on a blocking thread, never on a runtime
//! worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::catalog::{self, Manifest};
use crate::pipeline::encrypt::{Encryption, ReadBackKey, StoredDigest};
use crate::pipeline::FrameOptions;
use crate::source::etcd::{ConnectConfig, SourcePolicy};
use crate::store::Store;

pub use crate::catalog::readback::{check_database, read_facts, DbFacts};

use crate::{Error, Result};

mod finish;
mod prepare;
mod spool;
mod stream;
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
    crate::timestamp::Timestamp::from(t).to_string()
}

/// One destination through a run: its store (behind the retry wrapper), its encryption,
/// what its encrypting writer stored, and why it dropped out, if it did.
pub(super) struct Target {
    name: String,
    store: Arc<dyn Store>,
    encryption: Option<Arc<Encryption>>,
    /// Size and SHA-256 of what its encrypting writer stored (filled in at commit).
    digest: Option<StoredDigest>,
    /// Why it dropped out (`None`: still in the run).
    failed: Option<Error>,
}

/// Run blocking store work off the runtime's workers (see the module docs).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    crate::store::blocking::offload(f).await?
}

/// The outcome so far: nothing stored yet, and why each target that dropped out did.
fn nothing_stored(targets: &mut [Target]) -> BackupOutcome {
    BackupOutcome {
        stored: Vec::new(),
        failed: targets
            .iter_mut()
            .filter_map(|t| Some((t.name.clone(), t.failed.take()?)))
            .collect(),
    }
}

/// Take one backup into every destination: prepare (lock, clean), stream (with retries),
/// finish (commit, read back, write each manifest).
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
    let (mut targets, locks) = prepare::prepare(opts, dests).await?;
    if targets.iter().all(|t| t.failed.is_some()) {
        return Ok(nothing_stored(&mut targets));
    }
    // Encrypted objects are also encrypted to a key of this run alone, so that they can be
    // read back before the manifest is written (see crate::pipeline::encrypt).
    let read_back = Arc::new(ReadBackKey::generate());
    let Some(taken) = stream::stream(opts, &mut targets, &read_back, progress, t0).await? else {
        return Ok(nothing_stored(&mut targets));
    };
    let run = Run {
        storage_version: Some(taken.streamed.storage_version.clone()).filter(|v| !v.is_empty()),
        opts: opts.clone(),
        id: taken.id,
        view: taken.view,
        choice: taken.choice,
        attempts: taken.attempts,
        warns: taken.warns,
        t0,
        read_back,
    };
    let streamed = taken.streamed;
    let outcome = blocking(move || Ok(finish_all(&run, targets, streamed))).await?;
    drop(locks);
    Ok(outcome)
}
