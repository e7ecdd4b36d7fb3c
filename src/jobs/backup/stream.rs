//! Streaming: survey the cluster, choose a member, create each destination's object and
//! stream the snapshot into all of them at once; a stream that breaks is tried again from
//! scratch on another member (see the module docs of [`super`]).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use super::spool::{EndsOnDrop, Spool, StreamedDb};
use super::{blocking, now, prepare::each, BackupOptions, Progress, Target};
use crate::catalog;
use crate::pipeline::encrypt::ReadBackKey;
use crate::pipeline::{SinkResult, SnapshotSink};
use crate::source::etcd::{
    self, backoff, choose, survey, warnings, Choice, ClusterView, StreamEvent,
};
use crate::store::tee::Tee;
use crate::store::{ObjectWriter, Store};
use crate::{Error, Result};

/// Batches of the stream ([`etcd::BATCH_BYTES`], 1 MiB) buffered between the gRPC stream
/// and the pipeline: 4 MiB lets the member keep sending (and reading its disk) while a
/// compression frame is being handed over, without letting memory grow with the database.
const STREAM_BUFFER_BATCHES: usize = 4;

enum AttemptError {
    /// Worth another try on another member.
    Retry(Error),
    /// Retrying will not help.
    Fatal(Error),
}

pub(super) struct Streamed {
    pub(super) tee: Tee,
    pub(super) result: SinkResult,
    pub(super) started: OffsetDateTime,
    /// `SnapshotResponse.version` (empty before etcd 3.6).
    pub(super) storage_version: String,
    /// The streamed database, whole, for the hashkv walk (see [`Spool::for_stream`]).
    pub(super) spool: Option<StreamedDb>,
}

async fn attempt(
    opts: &BackupOptions,
    choice: &Choice,
    writers: Vec<(usize, String, Box<dyn ObjectWriter>)>,
    progress: Arc<dyn Progress>,
) -> std::result::Result<Streamed, AttemptError> {
    let started = now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<StreamEvent>(STREAM_BUFFER_BATCHES);
    let frames = opts.frames;
    let tee = Tee::new(writers);
    let prog = Arc::clone(&progress);
    let what = format!("snapshot from {}", choice.name);
    let storage_version = Arc::new(std::sync::Mutex::new(String::new()));
    let reported = Arc::clone(&storage_version);
    // At background priority: on a shared host the member needs the CPU to send.
    let sink = crate::store::blocking::offload_background("lifeboat-sink", move || {
        sink_events(tee, frames, &mut rx, &*prog, &what, &reported)
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
    let (sunk, expected, spool) = sink.await.map_err(AttemptError::Fatal)?;
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
            // Complete, and its bytes are the ones the trailer was just checked against.
            let spool = spool.filter(|s| s.spool.outcome().is_ok() && split.db_len == expected);
            Ok(Streamed {
                tee,
                result,
                started,
                storage_version,
                spool,
            })
        }
    }
}

/// The pipeline's side of a stream (on a blocking thread): the member's messages into the
/// sink, and the database's bytes (not etcd's trailer after them) into a spool whose
/// hashkv walk starts at once ([`StreamedDb`]). Returns the sink's result, the announced
/// database length and the spool, finished whole only if every announced byte came (the
/// caller then checks the trailer); on every other way out the spool is ended as stopped.
fn sink_events(
    tee: Tee,
    frames: crate::pipeline::FrameOptions,
    rx: &mut tokio::sync::mpsc::Receiver<StreamEvent>,
    prog: &dyn Progress,
    what: &str,
    reported: &std::sync::Mutex<String>,
) -> (io::Result<(Tee, SinkResult)>, u64, Option<StreamedDb>) {
    let mut expected = 0;
    let mut sink = match SnapshotSink::new(tee, frames) {
        Ok(s) => s,
        Err(e) => return (Err(e), 0, None),
    };
    let mut got = 0u64;
    let mut spool: Option<(StreamedDb, EndsOnDrop<Arc<Spool>>)> = None;
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
                spool = Spool::for_stream(expected_db_len).map(|s| {
                    let db = StreamedDb::start(s);
                    let ends = db.ends_on_drop();
                    (db, ends)
                });
                prog.begin(what, Some(expected_db_len));
            }
            StreamEvent::Data(chunks) => {
                if let Some((s, _)) = &spool {
                    // The database's bytes only: not etcd's trailer after them.
                    let mut at = got;
                    s.spool.append_all(chunks.iter().map(|chunk| {
                        let n = (chunk.len() as u64).min(expected.saturating_sub(at)) as usize;
                        at += chunk.len() as u64;
                        &chunk[..n]
                    }));
                }
                for chunk in &chunks {
                    got += chunk.len() as u64;
                    if let Err(e) = sink.push(chunk) {
                        return (Err(e), expected, None);
                    }
                }
                prog.set(got);
            }
        }
    }
    let spool = spool.map(|(s, _ends)| {
        s.spool.finish(true);
        s
    });
    (sink.finish(), expected, spool)
}

/// Abort every output of a tee on a blocking thread (it removes partial objects).
async fn abort(tee: Tee) {
    let _ = crate::store::blocking::offload(move || tee.abort()).await;
}

/// What the stream phase hands to the finish: the snapshot in every destination still in
/// the run, and what the manifests say about how it was taken.
pub(super) struct Taken {
    pub(super) id: catalog::BackupId,
    pub(super) view: ClusterView,
    pub(super) choice: Choice,
    pub(super) streamed: Streamed,
    pub(super) attempts: u32,
    pub(super) warns: Vec<String>,
}

/// Stream one snapshot into every target still in the run, retrying broken streams on
/// other members. `None`: every target dropped out (each says why in `failed`).
pub(super) async fn stream(
    opts: &BackupOptions,
    targets: &mut [Target],
    read_back: &Arc<ReadBackKey>,
    progress: Arc<dyn Progress>,
    t0: Instant,
) -> Result<Option<Taken>> {
    let mut failed_members: Vec<u64> = Vec::new();
    let mut attempt_no = 0u32;
    let mut id: Option<catalog::BackupId> = None;
    let (view, choice, streamed) = loop {
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
            .get_or_insert_with(|| catalog::BackupId::new(now(), cluster_id))
            .clone();
        let size_hint = view
            .endpoints
            .iter()
            .find(|s| s.member_id == choice.member_id)
            .and_then(|s| u64::try_from(s.db_size).ok());
        let writers = create(targets, catalog::data_name(&id), size_hint, read_back).await?;
        if writers.is_empty() {
            return Ok(None);
        }
        match attempt(opts, &choice, writers, Arc::clone(&progress)).await {
            Ok(s) => {
                tracing::debug!("stream done after {:?}", t0.elapsed());
                break (view, choice, s);
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
    // Every attempt names the backup before it streams.
    let id =
        id.ok_or_else(|| Error::Internal("a stream ended before its backup had an id".into()))?;
    Ok(Some(Taken {
        id,
        view,
        choice,
        streamed,
        attempts: attempt_no,
        warns,
    }))
}

/// Create the object in every target still in the run (each on its own thread), wrapped
/// in its encryption: the writers for the tee, by target index. A target whose object
/// cannot be created drops out; an encrypting one keeps the digest its writer will fill.
async fn create(
    targets: &mut [Target],
    object: String,
    size_hint: Option<u64>,
    read_back: &Arc<ReadBackKey>,
) -> Result<Vec<(usize, String, Box<dyn ObjectWriter>)>> {
    let live: Vec<_> = targets
        .iter()
        .enumerate()
        .filter(|(_, t)| t.failed.is_none())
        .map(|(i, t)| (i, Arc::clone(&t.store), t.encryption.clone()))
        .collect();
    let key = Arc::clone(read_back);
    let created = blocking(move || {
        let made = each((0..live.len()).collect(), |k| {
            let (_, store, encryption) = &live[k];
            store
                .create_sized(&object, size_hint)
                .and_then(|w| match encryption {
                    Some(enc) => {
                        let at = format!("{}/{object}", store.location());
                        enc.wrap(w, &key, &at).map(|(w, d)| (w, Some(d)))
                    }
                    None => Ok((w, None)),
                })
        });
        Ok(live
            .iter()
            .zip(made)
            .map(|((i, _, _), (_, made))| (*i, made))
            .collect::<Vec<_>>())
    })
    .await?;
    let mut writers = Vec::new();
    for (i, made) in created {
        let t = &mut targets[i];
        match made {
            Ok((w, digest)) => {
                t.digest = digest;
                writers.push((i, t.name.clone(), w));
            }
            Err(e) => {
                tracing::debug!("destination {} left out: {e}", t.name);
                t.failed = Some(e);
            }
        }
    }
    Ok(writers)
}
