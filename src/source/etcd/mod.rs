//! A live etcd cluster as the source of backups.
//!
//! * [`ConnectConfig`]: endpoints, TLS and auth, timeouts (the etcdctl flags).
//! * [`survey`]: status and member list from every endpoint, alarms: what the cluster
//!   looks like right now, including members that do not answer.
//! * [`choose`]: which member to stream from, and why.
//! * [`stream_snapshot`]: `Maintenance.Snapshot` from one member, chunk by chunk.

pub mod capture;
mod choose;
mod connect;
pub(crate) mod errors;
pub mod quota;
mod survey;
mod tls_probe;

pub use choose::{choose, Choice, SourcePolicy};
pub use connect::{strip_scheme, ConnectConfig};
pub use survey::{
    backoff, survey, warnings, AlarmInfo, ClusterView, EndpointStatus, LastLeader, MemberInfo,
    Quorum,
};

use std::time::Duration;

use crate::error::EtcdErrorKind;
use crate::{Error, Result};

/// What [`stream_snapshot`] hands to the pipeline, in order.
#[derive(Debug)]
pub enum StreamEvent {
    /// First: the database size etcd announced (bytes before the 32-byte digest), and the
    /// storage version the member reported with it (`SnapshotResponse.version`: the db's
    /// `meta/storageVersion` on etcd 3.6+, empty on 3.5 and older).
    Start {
        expected_db_len: u64,
        storage_version: String,
    },
    /// The next bytes of the stream, exactly as etcd sent them: its messages (32 KiB
    /// each), in order, gathered into batches of about [`BATCH_BYTES`].
    Data(Vec<Vec<u8>>),
}

/// Stream bytes handed to the pipeline at a time. One hand-over per etcd message (32 KiB)
/// woke the pipeline's thread 21,000 times per GiB, and those switches took CPU time the
/// member needs to send when both share a small machine; batching them is free of copies.
pub const BATCH_BYTES: usize = 1 << 20;

/// Paces a stream to an average rate by sleeping between messages.
struct Pace {
    bytes_per_sec: u64,
    start: std::time::Instant,
    seen: u64,
}

impl Pace {
    fn new(bytes_per_sec: u64) -> Self {
        Pace {
            bytes_per_sec: bytes_per_sec.max(1),
            start: std::time::Instant::now(),
            seen: 0,
        }
    }

    async fn consume(&mut self, n: usize) {
        self.seen += n as u64;
        let due = Duration::from_secs_f64(self.seen as f64 / self.bytes_per_sec as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// Stream a snapshot from `endpoint` (member `member`, named in messages) into `tx`, one
/// event per message.
///
/// `idle` bounds the wait for each message: a member that stops sending counts as a broken
/// stream ([`EtcdErrorKind::Stalled`]). `rate_limit` (bytes per second) paces the reading side, so that gRPC flow
/// control holds the member back too: it spares the member's disk and network.
/// Returns the number of bytes received. Fails with [`Error::Etcd`] when the stream
/// breaks, and with [`Error::Failed`] when the receiving side has gone away.
///
/// The stream runs as a task of its own on the runtime's workers, beside the gRPC
/// connection's task, and ends when the returned future is dropped. Awaited where it was
/// called (the main thread, under `block_on`), every message the connection decoded on a
/// worker had to wake that thread: two thread switches per 32 KiB, CPU time taken from a
/// member that shares the machine.
pub async fn stream_snapshot(
    cfg: &ConnectConfig,
    endpoint: &str,
    member: &str,
    idle: Duration,
    rate_limit: Option<u64>,
    tx: tokio::sync::mpsc::Sender<StreamEvent>,
) -> Result<u64> {
    let (cfg, endpoint, member) = (cfg.clone(), endpoint.to_owned(), member.to_owned());
    crate::task::AbortOnDrop::spawn(async move {
        receive_snapshot(&cfg, &endpoint, &member, idle, rate_limit, tx).await
    })
    .join()
    .await
    .unwrap_or_else(|e| Err(Error::Internal(format!("the snapshot stream's task: {e}"))))
}

async fn receive_snapshot(
    cfg: &ConnectConfig,
    endpoint: &str,
    member: &str,
    idle: Duration,
    rate_limit: Option<u64>,
    tx: tokio::sync::mpsc::Sender<StreamEvent>,
) -> Result<u64> {
    let mut pace = rate_limit.map(Pace::new);
    let sink_gone = || Error::Failed("the backup pipeline stopped taking data".into());
    let mut client = cfg.connect_one(endpoint, true).await?;
    let mut stream = tokio::time::timeout(cfg.command_timeout, client.snapshot())
        .await
        .map_err(|_| {
            Error::etcd(
                endpoint,
                EtcdErrorKind::Timeout,
                format!(
                    "no snapshot stream within --command-timeout {}",
                    humantime::format_duration(cfg.command_timeout)
                ),
            )
        })?
        .map_err(|e| errors::classify(cfg, endpoint, "snapshot", &e))?;
    let mut received = 0u64;
    let mut started = false;
    let mut batch = Batch::default();
    loop {
        let msg = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| {
                Error::etcd(
                    endpoint,
                    EtcdErrorKind::Stalled,
                    format!(
                        "stalled: nothing for {} from member {member} (after {received} bytes; --stream-timeout)",
                        humantime::format_duration(idle)
                    ),
                )
            })?
            .map_err(|e| {
                errors::classify_mid_stream(
                    cfg,
                    endpoint,
                    &format!("snapshot stream broke after {received} bytes"),
                    &e,
                )
            })?;
        let Some(mut msg) = msg else {
            batch.flush(&tx).await.map_err(|_| sink_gone())?;
            break;
        };
        // Take the chunk out of the message rather than copying it (1 GiB of copies is
        // a measurable part of a backup's CPU time).
        let blob = std::mem::take(&mut msg.0.blob);
        if !started {
            started = true;
            let expected_db_len = msg.0.remaining_bytes + blob.len() as u64;
            let storage_version = msg.0.version.clone();
            tx.send(StreamEvent::Start {
                expected_db_len,
                storage_version,
            })
            .await
            .map_err(|_| sink_gone())?;
        }
        received += blob.len() as u64;
        if let Some(p) = &mut pace {
            p.consume(blob.len()).await;
        }
        if batch.add(blob) {
            batch.flush(&tx).await.map_err(|_| sink_gone())?;
        }
    }
    Ok(received)
}

/// Messages gathered for one [`StreamEvent::Data`].
#[derive(Default)]
struct Batch {
    chunks: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    /// Add a message's bytes; true when the batch is full.
    fn add(&mut self, blob: Vec<u8>) -> bool {
        if !blob.is_empty() {
            self.bytes += blob.len();
            self.chunks.push(blob);
        }
        self.bytes >= BATCH_BYTES
    }

    async fn flush(
        &mut self,
        tx: &tokio::sync::mpsc::Sender<StreamEvent>,
    ) -> std::result::Result<(), ()> {
        self.bytes = 0;
        let chunks = std::mem::take(&mut self.chunks);
        if chunks.is_empty() {
            return Ok(());
        }
        tx.send(StreamEvent::Data(chunks)).await.map_err(|_| ())
    }
}
