//! A live etcd cluster as the source of backups.
//!
//! * [`ConnectConfig`]: endpoints, TLS and auth, timeouts (the etcdctl flags).
//! * [`survey`]: status and member list from every endpoint, alarms: what the cluster
//!   looks like right now, including members that do not answer.
//! * [`choose`]: which member to stream from, and why.
//! * [`stream_snapshot`]: `Maintenance.Snapshot` from one member, chunk by chunk.

mod choose;
mod connect;
mod survey;

pub use choose::{choose, Choice, SourcePolicy};
pub use connect::ConnectConfig;
pub use survey::{backoff, survey, warnings, AlarmInfo, ClusterView, EndpointStatus, MemberInfo};

use std::time::Duration;

use crate::{Error, Result};

/// How the snapshot stream begins: the size etcd announced.
#[derive(Debug, Clone, Copy)]
pub struct StreamStart {
    /// Database bytes etcd will send before the 32-byte digest.
    pub expected_db_len: u64,
}

/// Stream a snapshot from `endpoint` and hand every chunk to `on_chunk`, in order.
///
/// `on_start` is called once with the announced size, before the first chunk. `idle` bounds
/// the wait for each message (a member that stops sending is treated as a broken stream).
/// Returns the total bytes received.
pub async fn stream_snapshot<S, C>(
    cfg: &ConnectConfig,
    endpoint: &str,
    idle: Duration,
    mut on_start: S,
    mut on_chunk: C,
) -> Result<u64>
where
    S: FnMut(StreamStart),
    C: FnMut(Vec<u8>) -> Result<()>,
{
    let etcd_err = |message: String| Error::Etcd {
        endpoint: endpoint.to_string(),
        message,
    };
    let mut client = cfg.connect_one(endpoint, true).await?;
    let mut stream = tokio::time::timeout(cfg.command_timeout, client.snapshot())
        .await
        .map_err(|_| {
            etcd_err(format!(
                "no snapshot stream after {:?}",
                cfg.command_timeout
            ))
        })?
        .map_err(|e| etcd_err(format!("snapshot: {e}")))?;
    let mut received = 0u64;
    let mut started = false;
    loop {
        let msg = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| {
                etcd_err(format!(
                    "snapshot stream stalled: nothing for {idle:?} after {received} bytes"
                ))
            })?
            .map_err(|e| etcd_err(format!("snapshot stream broke after {received} bytes: {e}")))?;
        let Some(msg) = msg else { break };
        let blob = msg.blob();
        if !started {
            started = true;
            on_start(StreamStart {
                expected_db_len: msg.remaining_bytes() + blob.len() as u64,
            });
        }
        received += blob.len() as u64;
        if !blob.is_empty() {
            on_chunk(blob.to_vec())?;
        }
    }
    Ok(received)
}
