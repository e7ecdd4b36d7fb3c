//! Everything `status` needs to know before judging: every member asked, and the peer
//! port of every member that does not answer probed.

use serde::Serialize;

use crate::source::etcd::{strip_scheme, survey, ClusterView, ConnectConfig, EndpointStatus};

/// Survey the endpoints, then (unless `endpoints_only`) every member the member list names
/// that no endpoint spoke for, through its first advertised client URL.
pub async fn gather(cfg: &ConnectConfig, endpoints_only: bool) -> crate::Result<ClusterView> {
    let mut view = survey(cfg).await?;
    if endpoints_only {
        return Ok(view);
    }
    let asked: Vec<String> = cfg
        .endpoints
        .iter()
        .map(|e| strip_scheme(e).to_string())
        .collect();
    let mut extra: Vec<String> = Vec::new();
    for m in &view.members {
        // One URL per member is enough; skip members already asked through any of theirs.
        if m.client_urls
            .iter()
            .any(|u| asked.iter().any(|a| a == strip_scheme(u)))
        {
            continue;
        }
        if let Some(u) = m.client_urls.first() {
            extra.push(u.clone());
        }
    }
    if extra.is_empty() {
        return Ok(view);
    }
    let mut more = cfg.clone();
    more.endpoints = extra.clone();
    match survey(&more).await {
        Ok(v) => {
            view.endpoints.extend(v.endpoints);
            if view.alarms.is_empty() && v.cluster_id == view.cluster_id {
                view.alarms = v.alarms;
            }
        }
        Err(e) => {
            for ep in extra {
                view.endpoints.push(EndpointStatus::failed(&ep, &e));
            }
        }
    }
    view.settle_leader();
    Ok(view)
}

/// Read each answering member's `--quota-backend-bytes` from its /metrics
/// (`etcd_server_quota_backend_bytes`, as the daemon does), concurrently; a member whose
/// /metrics does not say keeps `None`. Returns the first failure's words, if any.
pub async fn read_quotas(view: &mut ClusterView, cfg: &ConnectConfig) -> Option<String> {
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in view.endpoints.iter().enumerate() {
        if !s.reachable || !view.is_ours(s) {
            continue;
        }
        let (cfg, ep) = (cfg.clone(), s.endpoint.clone());
        set.spawn(async move { (i, crate::source::etcd::quota::quota_bytes(&cfg, &ep).await) });
    }
    let mut failure = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok(q))) => view.endpoints[i].quota_bytes = Some(q),
            Ok((_, Err(e))) => {
                failure.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {}
        }
    }
    failure
}

/// A TCP probe of an unreachable member's peer URL (port 2380 usually).
#[derive(Debug, Clone, Serialize)]
pub struct PeerProbe {
    pub member_id: u64,
    pub url: String,
    /// `None`: the port accepts connections.
    pub error: Option<String>,
    /// The port refused the connection (nothing listens), as opposed to no answer.
    #[serde(skip)]
    pub refused: bool,
    /// The cluster id the etcd on that peer port belongs to (`X-Etcd-Cluster-ID` of its
    /// `/members`), when it says: an etcd of another cluster where this member should run
    /// answers there even while it has no leader and its client URL answers nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<u64>,
}

/// The `X-Etcd-Cluster-ID` header of the peer URL's `/members`.
async fn peer_cluster_id(cfg: &crate::source::etcd::ConnectConfig, url: &str) -> Option<u64> {
    let (headers, _) = crate::source::etcd::quota::http_get(cfg, url, url, "/members")
        .await
        .ok()?;
    let v = headers.get("x-etcd-cluster-id")?.to_str().ok()?;
    u64::from_str_radix(v.trim(), 16).ok()
}

/// Probe the first peer URL of every member no endpoint speaks for (does its peer port
/// accept connections, and for which cluster?), concurrently, each bounded by the dial
/// and command timeouts.
pub async fn probe_peers(view: &ClusterView, cfg: &ConnectConfig) -> Vec<PeerProbe> {
    let timeout = cfg.dial_timeout;
    let mut set = tokio::task::JoinSet::new();
    for m in &view.members {
        if view.status_of(m.id).is_some() {
            continue;
        }
        let Some(url) = m.peer_urls.first().cloned() else {
            continue;
        };
        let id = m.id;
        let cfg = cfg.clone();
        set.spawn(async move {
            let addr = strip_scheme(&url)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let (error, refused) =
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => (None, false),
                    Ok(Err(e)) => (
                        Some(crate::error::io_words(&e)),
                        e.kind() == std::io::ErrorKind::ConnectionRefused,
                    ),
                    Err(_) => (
                        Some(format!(
                            "no connection within {}",
                            humantime::format_duration(timeout)
                        )),
                        false,
                    ),
                };
            let cluster_id = if error.is_none() {
                peer_cluster_id(&cfg, &url).await
            } else {
                None
            };
            PeerProbe {
                member_id: id,
                url,
                error,
                refused,
                cluster_id,
            }
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(p) = r {
            out.push(p);
        }
    }
    out.sort_by_key(|p| p.member_id);
    out
}
