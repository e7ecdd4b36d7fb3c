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
//! not retried: it fails the backup as an integrity problem. Nothing is listed until the
//! manifest is written, and every failure path removes the partial objects.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::catalog::manifest::{AlarmRecord, EndpointRecord};
use crate::catalog::{self, Manifest, ManifestMember, SourceMember, FORMAT_NAME, FORMAT_VERSION};
use crate::io::ReadAt;
use crate::pipeline::{FrameOptions, FramedReader, SinkResult, SnapshotSink};
use crate::source::etcd::{
    self, backoff, choose, survey, warnings, Choice, ClusterView, ConnectConfig, SourcePolicy,
    StreamEvent,
};
use crate::store::{ObjectWriter, Store, StoreLock};
use crate::{Error, Result};

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

/// SHA-256 of every byte of a stored object, read in order.
pub fn digest_object(obj: &dyn ReadAt) -> std::io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let size = obj.size();
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        obj.read_exact_at(off, &mut buf[..n])?;
        sha.update(&buf[..n]);
        off += n as u64;
    }
    Ok(sha.finalize().into())
}

/// A named store to back up into.
pub struct Destination {
    pub name: String,
    pub store: Box<dyn Store>,
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

/// Facts read from the database inside the snapshot, not from a separate request that
/// would race with writes.
#[derive(Debug, Clone)]
pub struct DbFacts {
    pub revision: i64,
    pub compact_revision: Option<i64>,
    pub consistent_index: u64,
    pub term: u64,
    pub page_size: u32,
    pub db_size: u64,
}

/// Read revision, raft index/term and sizes from a database image (cheap: a few pages).
pub fn read_facts(db: &dyn ReadAt) -> std::result::Result<DbFacts, String> {
    let s = crate::format::etcd::summary(db).map_err(|e| e.to_string())?;
    Ok(DbFacts {
        revision: s.revision,
        compact_revision: s.compact_revision,
        consistent_index: s.consistent_index,
        term: s.term,
        page_size: s.page_size,
        db_size: s.db_size,
    })
}

/// Database-level checks of a stored backup against its manifest.
pub fn check_database<R: ReadAt>(reader: &FramedReader<R>, m: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    match read_facts(reader) {
        Err(e) => problems.push(format!("database does not open: {e}")),
        Ok(f) => {
            if f.revision != m.revision {
                problems.push(format!(
                    "database revision is {}, the manifest says {}",
                    f.revision, m.revision
                ));
            }
            if f.consistent_index != m.raft_index || f.term != m.raft_term {
                problems.push(format!(
                    "database raft index/term are {}/{}, the manifest says {}/{}",
                    f.consistent_index, f.term, m.raft_index, m.raft_term
                ));
            }
            if f.db_size != m.db_size {
                problems.push(format!(
                    "database high-water mark gives {} bytes, the manifest says {}",
                    f.db_size, m.db_size
                ));
            }
        }
    }
    problems
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Writes the same bytes to every destination's object; a destination that fails is
/// dropped (its partial object removed) while the others go on.
struct Tee {
    outs: Vec<TeeOut>,
}

struct TeeOut {
    dest: usize,
    writer: Option<Box<dyn ObjectWriter>>,
    error: Option<String>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for o in &mut self.outs {
            if let Some(w) = &mut o.writer {
                if let Err(e) = w.write_all(buf) {
                    o.error = Some(e.to_string());
                    if let Some(w) = o.writer.take() {
                        w.abort();
                    }
                }
            }
        }
        if self.outs.iter().all(|o| o.writer.is_none()) {
            let why: Vec<String> = self.outs.iter().filter_map(|o| o.error.clone()).collect();
            return Err(io::Error::other(format!(
                "every destination failed: {}",
                why.join("; ")
            )));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tee {
    fn abort(self) {
        for o in self.outs {
            if let Some(w) = o.writer {
                w.abort();
            }
        }
    }
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
}

async fn attempt(
    opts: &BackupOptions,
    choice: &Choice,
    writers: Vec<(usize, Box<dyn ObjectWriter>)>,
    progress: Arc<dyn Progress>,
) -> std::result::Result<Streamed, AttemptError> {
    let started = now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<StreamEvent>(STREAM_BUFFER_MESSAGES);
    let frames = opts.frames;
    let tee = Tee {
        outs: writers
            .into_iter()
            .map(|(dest, w)| TeeOut {
                dest,
                writer: Some(w),
                error: None,
            })
            .collect(),
    };
    let prog = Arc::clone(&progress);
    let what = format!("snapshot from {}", choice.name);
    let sink = tokio::task::spawn_blocking(move || -> (io::Result<(Tee, SinkResult)>, u64) {
        let mut expected = 0;
        let mut sink = match SnapshotSink::new(tee, frames) {
            Ok(s) => s,
            Err(e) => return (Err(e), 0),
        };
        let mut got = 0u64;
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                StreamEvent::Start { expected_db_len } => {
                    expected = expected_db_len;
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
        (_, Err(e)) => Err(AttemptError::Fatal(Error::store(
            "destination",
            crate::error::StoreErrorKind::Other,
            e.to_string(),
        ))),
        (Err(e), Ok((tee, _))) => {
            tee.abort();
            Err(AttemptError::Retry(e))
        }
        (Ok(_), Ok((tee, result))) => {
            let split = &result.split;
            if split.trailer.is_none() || (expected > 0 && split.db_len < expected) {
                tee.abort();
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
                tee.abort();
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
                tee.abort();
                return Err(AttemptError::Fatal(Error::integrity(
                    format!("snapshot stream from {}", choice.endpoint),
                    format!(
                        "{} database bytes arrived, {expected} were announced",
                        split.db_len
                    ),
                )));
            }
            Ok(Streamed {
                tee,
                result,
                started,
            })
        }
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
    // Writer locks for the whole run; with them held, debris of killed runs can go.
    let mut _locks: Vec<Box<dyn StoreLock>> = Vec::new();
    for d in dests {
        _locks.push(d.store.lock()?);
        for p in d.store.clean_partials()? {
            tracing::info!(
                "removed {p} from {}: left by a run that did not finish",
                d.name
            );
        }
        for o in catalog::orphans(d.store.as_ref())? {
            tracing::info!(
                "removed {o} from {}: a data object without manifest (a run that did not finish)",
                d.name
            );
            d.store.remove(&o)?;
        }
    }

    let mut failed_members: Vec<u64> = Vec::new();
    let mut attempt_no = 0u32;
    let mut id: Option<String> = None;
    let (view, choice, streamed) = loop {
        attempt_no += 1;
        let view = match survey(&opts.conn).await {
            Ok(v) => v,
            Err(e) if attempt_no <= opts.retries => {
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
        let mut writers = Vec::new();
        for (i, d) in dests.iter().enumerate() {
            writers.push((i, d.store.create(&catalog::data_name(&id))?));
        }
        match attempt(opts, &choice, writers, Arc::clone(&progress)).await {
            Ok(s) => {
                tracing::debug!("stream done after {:?}", t0.elapsed());
                break (view, choice, s);
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry(e)) if attempt_no <= opts.retries => {
                let wait = backoff(attempt_no);
                tracing::warn!(
                    "attempt {attempt_no} failed: {e}; trying again in {wait:?} ({} left)",
                    opts.retries + 1 - attempt_no
                );
                failed_members.push(choice.member_id);
                tokio::time::sleep(wait).await;
            }
            Err(AttemptError::Retry(e)) => {
                return Err(Error::Failed(format!(
                    "backup failed after {attempt_no} attempt(s); last: {e}"
                )))
            }
        }
    };
    let id = id.unwrap_or_default();
    let Streamed {
        tee,
        result,
        started,
    } = streamed;

    let mut outcome = BackupOutcome {
        stored: Vec::new(),
        failed: Vec::new(),
    };
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
    for o in tee.outs {
        let dest = &dests[o.dest];
        let Some(w) = o.writer else {
            outcome.failed.push((
                dest.name.clone(),
                Error::store(
                    dest.store.location(),
                    crate::error::StoreErrorKind::Other,
                    o.error.unwrap_or_default(),
                ),
            ));
            continue;
        };
        let finished = w.commit().and_then(|()| {
            finish_destination(
                opts, dest, &id, &view, &choice, attempt_no, &result, started, &warns, t0,
            )
        });
        match finished {
            Ok(m) => outcome.stored.push((dest.name.clone(), m)),
            Err(e) => {
                let _ = dest.store.remove(&catalog::data_name(&id));
                outcome.failed.push((dest.name.clone(), e));
            }
        }
    }
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
fn finish_destination(
    opts: &BackupOptions,
    dest: &Destination,
    id: &str,
    view: &ClusterView,
    choice: &Choice,
    attempts: u32,
    result: &SinkResult,
    started: OffsetDateTime,
    warns: &[String],
    t0: Instant,
) -> Result<Manifest> {
    let object = catalog::data_name(id);
    let where_ = format!("{}/{object}", dest.store.location());
    let source_status = view.status_of(choice.member_id);
    let mut m = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        id: id.to_string(),
        created_at: rfc3339(started),
        completed_at: String::new(),
        cluster_id: format!("{:x}", view.cluster_id.unwrap_or(0)),
        revision: 0,
        compact_revision: None,
        raft_term: 0,
        raft_index: 0,
        source_member: SourceMember {
            id: format!("{:x}", choice.member_id),
            name: choice.name.clone(),
            endpoint: choice.endpoint.clone(),
            reason: choice.reason.clone(),
            attempts,
        },
        members: view
            .members
            .iter()
            .map(|mm| ManifestMember {
                id: format!("{:x}", mm.id),
                name: mm.name.clone(),
                peer_urls: mm.peer_urls.clone(),
                client_urls: mm.client_urls.clone(),
                is_learner: mm.is_learner,
            })
            .collect(),
        etcd_version: source_status.map(|s| s.version.clone()).unwrap_or_default(),
        db_size: result.split.db_len,
        page_size: 0,
        stored_size: result.stored.stored_len,
        db_sha256: hex::encode(result.split.db_sha256),
        stored_sha256: hex::encode(result.stored.stored_sha256),
        compression: "zstd".into(),
        compression_level: opts.frames.level,
        frame_size: opts.frames.frame_size as u64,
        encryption: "none".into(),
        object: object.clone(),
        alarms: view
            .alarms
            .iter()
            .map(|a| AlarmRecord {
                member_id: format!("{:x}", a.member_id),
                alarm: a.alarm.clone(),
            })
            .collect(),
        cluster_status: view
            .endpoints
            .iter()
            .map(|s| EndpointRecord {
                endpoint: s.endpoint.clone(),
                reachable: s.reachable,
                error: s.error.clone(),
                member_id: s.reachable.then(|| format!("{:x}", s.member_id)),
                is_leader: s.reachable && s.member_id == s.leader,
                raft_term: s.raft_term,
                raft_index: s.raft_index,
                raft_applied_index: s.raft_applied_index,
                db_size: s.db_size,
                db_size_in_use: s.db_size_in_use,
                version: s.version.clone(),
            })
            .collect(),
        warnings: warns.to_vec(),
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        duration_seconds: 0.0,
    };
    // Read back what was stored: the facts come from the database itself.
    let reader = super::open_backup_db(dest.store.as_ref(), &m)?;
    let facts = read_facts(&reader).map_err(|e| {
        Error::integrity(&where_, format!("the streamed database does not open: {e}"))
    })?;
    if facts.db_size != result.split.db_len {
        return Err(Error::integrity(
            &where_,
            format!(
                "database meta says {} bytes (high-water mark × page size), {} were streamed",
                facts.db_size, result.split.db_len
            ),
        ));
    }
    tracing::debug!("committed and read back after {:?}", t0.elapsed());
    m.revision = facts.revision;
    m.compact_revision = facts.compact_revision;
    m.raft_term = facts.term;
    m.raft_index = facts.consistent_index;
    m.page_size = facts.page_size;
    match opts.read_back {
        ReadBack::Facts => {}
        ReadBack::Digest => {
            let obj = reader.inner();
            if obj.size() != m.stored_size {
                return Err(Error::integrity(
                    &where_,
                    format!(
                        "reads back as {} bytes, {} were written",
                        obj.size(),
                        m.stored_size
                    ),
                ));
            }
            let got = digest_object(obj.as_ref()).map_err(|e| {
                Error::store(
                    dest.store.location(),
                    crate::error::StoreErrorKind::Other,
                    format!("read back {object}: {e}"),
                )
            })?;
            if hex::encode(got) != m.stored_sha256 {
                return Err(Error::integrity(
                    &where_,
                    format!(
                        "reads back with SHA-256 {}, {} was written",
                        hex::encode(got),
                        m.stored_sha256
                    ),
                ));
            }
        }
        ReadBack::Full => {
            let problems = super::verify::check_stream(&reader, &m, &|_| {}, false);
            if !problems.is_empty() {
                return Err(Error::integrity(&where_, problems.join("; ")));
            }
        }
    }
    tracing::debug!("stored object checked after {:?}", t0.elapsed());
    m.completed_at = rfc3339(now());
    m.duration_seconds = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    dest.store
        .put_bytes(&catalog::manifest_name(id), &m.to_json())?;
    Ok(m)
}
