//! What `lifeboat capture` asks etcd: one watch over the whole keyspace with progress
//! notifications, the lease list and TTLs, and `HashKV`. One endpoint at a time; on failure
//! the caller reconnects to the next endpoint ([`Source::connect_next`]).

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};

use super::errors::{classify, classify_mid_stream};
use super::ConnectConfig;
use crate::error::{EtcdErrorKind, Result};
use crate::format::capture::{KeyValue, Record};
use crate::Error;

/// A client on one endpoint of the cluster.
pub struct Source {
    cfg: ConnectConfig,
    next: usize,
    endpoint: String,
    client: Client,
}

/// A watch answer, reduced to what capture needs.
pub enum WatchAnswer {
    /// Changes (in revision and sub-revision order) and the header revision.
    Events { records: Vec<Record>, header: i64 },
    /// The watch start was compacted: history resumes at `compact_revision`.
    Compacted { compact_revision: i64 },
    /// The server cancelled the watch for another reason (reconnect).
    Cancelled(String),
}

/// A running watch.
pub struct Watch {
    stream: WatchStream,
    cfg: ConnectConfig,
    endpoint: String,
}

impl Watch {
    /// The next answer; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<WatchAnswer>> {
        let m = self
            .stream
            .message()
            .await
            .map_err(|e| classify_mid_stream(&self.cfg, &self.endpoint, "watch", &e))?;
        let Some(m) = m else { return Ok(None) };
        if m.compact_revision() > 0 {
            return Ok(Some(WatchAnswer::Compacted {
                compact_revision: m.compact_revision(),
            }));
        }
        if m.canceled() {
            return Ok(Some(WatchAnswer::Cancelled(m.cancel_reason().to_string())));
        }
        let header = m.header().map_or(0, |h| h.revision());
        let mut records = Vec::with_capacity(m.events().len());
        for ev in m.events() {
            let Some(kv) = ev.kv() else { continue };
            records.push(match ev.event_type() {
                EventType::Put => Record::Put(KeyValue {
                    key: kv.key().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                    version: kv.version(),
                    value: kv.value().to_vec(),
                    lease: kv.lease(),
                }),
                EventType::Delete => Record::Delete {
                    key: kv.key().to_vec(),
                    revision: kv.mod_revision(),
                },
            });
        }
        Ok(Some(WatchAnswer::Events { records, header }))
    }
}

impl Source {
    /// Connect to the first endpoint that answers, starting after the last one used.
    pub async fn connect(cfg: &ConnectConfig) -> Result<Source> {
        let mut s: Option<Source> = None;
        Source::reconnect(cfg, &mut s, 0).await?;
        s.ok_or_else(|| Error::Internal("capture: no source after connecting".into()))
    }

    async fn reconnect(cfg: &ConnectConfig, slot: &mut Option<Source>, start: usize) -> Result<()> {
        let n = cfg.endpoints.len().max(1);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let Some(ep) = cfg.endpoints.get(idx) else {
                break;
            };
            match cfg.connect_one(ep, true).await {
                Ok(client) => {
                    *slot = Some(Source {
                        cfg: cfg.clone(),
                        next: idx + 1,
                        endpoint: ep.clone(),
                        client,
                    });
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::flag("--endpoints", "no endpoint given")))
    }

    /// Move to the next endpoint (a member failed or lost its leader).
    pub async fn connect_next(&mut self) -> Result<()> {
        let mut slot = None;
        Source::reconnect(&self.cfg, &mut slot, self.next).await?;
        if let Some(s) = slot {
            *self = s;
        }
        Ok(())
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The cluster id and the current revision.
    pub async fn head(&mut self) -> Result<(u64, i64)> {
        let r = self
            .timed(
                "get",
                self.client
                    .clone()
                    .get(vec![0u8], Some(GetOptions::new().with_count_only())),
            )
            .await?;
        let h = r
            .header()
            .ok_or_else(|| self.broken("get: answer without a header"))?;
        Ok((h.cluster_id(), h.revision()))
    }

    /// Watch every key from `from` (inclusive), with progress notifications.
    pub async fn watch(&mut self, from: i64) -> Result<Watch> {
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(from)
            .with_progress_notify();
        let mut c = self.client.clone();
        let stream = self.timed("watch", c.watch(vec![0u8], Some(opts))).await?;
        Ok(Watch {
            stream,
            cfg: self.cfg.clone(),
            endpoint: self.endpoint.clone(),
        })
    }

    /// The ids of the leases that exist now.
    pub async fn leases(&mut self) -> Result<Vec<i64>> {
        let mut c = self.client.clone();
        let r = self.timed("lease leases", c.leases()).await?;
        Ok(r.leases().iter().map(|l| l.id()).collect())
    }

    /// A lease's granted TTL (seconds); `None` when it is gone already.
    pub async fn granted_ttl(&mut self, id: i64) -> Result<Option<i64>> {
        let mut c = self.client.clone();
        let r = self
            .timed("lease timetolive", c.lease_time_to_live(id, None))
            .await?;
        Ok((r.ttl() >= 0).then(|| r.granted_ttl()))
    }

    /// `HashKV` at `rev` and the compaction revision it answered with.
    pub async fn hash_kv(&mut self, rev: i64) -> Result<(u32, i64)> {
        let mut c = self.client.clone();
        let r = self.timed("hashkv", c.hash_kv(rev)).await?;
        Ok((r.hash(), r.compact_version()))
    }

    async fn timed<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.cfg.command_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&self.cfg, &self.endpoint, what, &e)),
            Err(_) => Err(Error::etcd(
                &self.endpoint,
                EtcdErrorKind::Timeout,
                format!(
                    "{what}: no answer within {}",
                    humantime::format_duration(self.cfg.command_timeout)
                ),
            )),
        }
    }

    fn broken(&self, what: &str) -> Error {
        Error::etcd(&self.endpoint, EtcdErrorKind::Broken, what.to_string())
    }
}
