//! What the cluster looks like right now, asked of every endpoint at once.

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmType};
use serde::Serialize;

use super::{errors, strip_scheme, ConnectConfig};
use crate::error::EtcdErrorKind;
use crate::{Error, Result};

/// One endpoint's answer to `Maintenance.Status` (or why there was none).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub reachable: bool,
    pub error: Option<String>,
    /// What kind of failure `error` is: refused, timeout (connected but no answer), TLS...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<EtcdErrorKind>,
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub revision: i64,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub version: String,
    /// The member's storage version (etcd 3.6+: the db's `meta/storageVersion`, which
    /// moves up with the cluster version); empty before 3.6.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub storage_version: String,
    pub is_learner: bool,
    /// Errors the member itself reports (e.g. "NOSPACE" alarm text).
    pub errors: Vec<String>,
    /// Member ids in this endpoint's member list (to see whether endpoints agree).
    pub member_list: Vec<u64>,
    /// `--quota-backend-bytes` as the member's /metrics says
    /// (`etcd_server_quota_backend_bytes`), when it was asked (`status`) and answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
}

impl EndpointStatus {
    /// The status of an endpoint that did not answer, and why.
    pub fn unreachable(endpoint: &str, error: String) -> Self {
        EndpointStatus {
            endpoint: endpoint.to_string(),
            reachable: false,
            error: Some(error),
            error_kind: None,
            member_id: 0,
            cluster_id: 0,
            leader: 0,
            raft_term: 0,
            raft_index: 0,
            raft_applied_index: 0,
            revision: 0,
            db_size: 0,
            db_size_in_use: 0,
            version: String::new(),
            storage_version: String::new(),
            is_learner: false,
            errors: Vec::new(),
            member_list: Vec::new(),
            quota_bytes: None,
        }
    }

    /// The status of an endpoint that failed with `e`: its words without the endpoint
    /// (the row names it already), and its kind.
    pub fn failed(endpoint: &str, e: &Error) -> Self {
        let (kind, words) = match e {
            Error::Etcd { kind, message, .. } => (Some(*kind), message.clone()),
            other => (None, other.to_string()),
        };
        let mut s = Self::unreachable(endpoint, words);
        s.error_kind = kind;
        s
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlarmInfo {
    pub member_id: u64,
    pub alarm: String,
}

/// Everything [`survey`] learned.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub endpoints: Vec<EndpointStatus>,
    /// The member list of the first endpoint of [`ClusterView::cluster_id`] that answered.
    pub members: Vec<MemberInfo>,
    pub alarms: Vec<AlarmInfo>,
    /// The cluster most endpoints that answered belong to (the first one's on a tie).
    /// Endpoints of another cluster id are in `endpoints` but speak for no member of this
    /// one ([`ClusterView::is_ours`]).
    pub cluster_id: Option<u64>,
    /// The leader, when it answers itself or a quorum of voters answers and names it.
    pub leader: Option<u64>,
    /// When no leader is known now: the leader the surviving members last followed, and
    /// the raft term it led (a dead member is never reported as the leader).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_known_leader: Option<LastLeader>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct LastLeader {
    pub id: u64,
    pub raft_term: u64,
}

/// How many voting members answer, and how many a quorum needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quorum {
    pub voters: usize,
    /// Voters that answered.
    pub alive: usize,
    /// Voters that were asked (through an endpoint) and did not answer.
    pub down: usize,
    pub needed: usize,
}

impl Quorum {
    /// Whether a quorum may exist: voters not asked are given the benefit of the doubt.
    pub fn holds(&self) -> bool {
        self.voters == 0 || self.voters - self.down.min(self.voters) >= self.needed
    }
}

impl ClusterView {
    pub fn member(&self, id: u64) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }
    pub fn status_of(&self, id: u64) -> Option<&EndpointStatus> {
        self.endpoints
            .iter()
            .find(|s| s.reachable && s.member_id == id && self.is_ours(s))
    }

    /// Whether an endpoint that answered belongs to this view's cluster (an endpoint that
    /// did not answer is not known to belong elsewhere).
    pub fn is_ours(&self, s: &EndpointStatus) -> bool {
        !s.reachable || self.cluster_id.is_none_or(|c| s.cluster_id == c)
    }

    /// Endpoints that answered for another cluster.
    pub fn foreign(&self) -> impl Iterator<Item = &EndpointStatus> {
        self.endpoints.iter().filter(|s| !self.is_ours(s))
    }

    /// The endpoint of another cluster that answers at one of member `id`'s client URLs:
    /// where this cluster expects that member, something else runs.
    pub fn foreign_at(&self, id: u64) -> Option<&EndpointStatus> {
        let m = self.member(id)?;
        self.foreign().find(|s| {
            m.client_urls
                .iter()
                .any(|u| strip_scheme(u) == strip_scheme(&s.endpoint))
        })
    }
    pub fn name_of(&self, id: u64) -> String {
        self.member(id).map(|m| m.name.clone()).unwrap_or_default()
    }

    /// Voting members (learners do not count) that answered, against the majority needed.
    pub fn quorum(&self) -> Quorum {
        let voters: Vec<_> = self.members.iter().filter(|m| !m.is_learner).collect();
        let alive = voters
            .iter()
            .filter(|m| self.status_of(m.id).is_some())
            .count();
        let down = voters
            .iter()
            .filter(|m| {
                self.status_of(m.id).is_none()
                    && (self.failed_to_answer(m.id).is_some() || self.foreign_at(m.id).is_some())
            })
            .count();
        Quorum {
            voters: voters.len(),
            alive,
            down,
            needed: voters.len() / 2 + 1,
        }
    }

    /// Whether an endpoint that was asked speaks for member `id` (by its client URLs) but
    /// did not answer: such a member failed its status call just now.
    pub fn failed_to_answer(&self, id: u64) -> Option<&EndpointStatus> {
        let m = self.member(id)?;
        self.endpoints.iter().find(|s| {
            !s.reachable
                && m.client_urls
                    .iter()
                    .any(|u| strip_scheme(u) == strip_scheme(&s.endpoint))
        })
    }

    /// Decide [`ClusterView::leader`] from the answers: the leader most answers name,
    /// trusted only while a quorum may exist and the leader did not just fail to answer
    /// (it may be outside the endpoints asked). Survivors of a quorum loss keep naming the
    /// dead leader for a while (and a leader left alone names itself until it notices);
    /// that one becomes [`ClusterView::last_known_leader`].
    pub fn settle_leader(&mut self) {
        let mut votes: Vec<(u64, usize, u64)> = Vec::new();
        for s in self
            .endpoints
            .iter()
            .filter(|s| s.reachable && s.leader != 0 && self.is_ours(s))
        {
            match votes.iter_mut().find(|(l, _, _)| *l == s.leader) {
                Some(v) => {
                    v.1 += 1;
                    v.2 = v.2.max(s.raft_term);
                }
                None => votes.push((s.leader, 1, s.raft_term)),
            }
        }
        votes.sort_by_key(|v| std::cmp::Reverse(v.1));
        self.leader = None;
        self.last_known_leader = None;
        let Some(&(named, _, term)) = votes.first() else {
            return;
        };
        let answers_itself = self.status_of(named).is_some();
        let failed = self.failed_to_answer(named).is_some();
        if self.quorum().holds() && (answers_itself || !failed) {
            self.leader = Some(named);
        } else {
            self.last_known_leader = Some(LastLeader {
                id: named,
                raft_term: term,
            });
        }
    }
}

pub fn alarm_name(t: AlarmType) -> &'static str {
    match t {
        AlarmType::None => "NONE",
        AlarmType::Nospace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    }
}

/// Why `endpoint` gave no answer in time: nothing listens (refused), nothing answers the
/// dial (host down, firewall), or it accepts connections but does not answer (a frozen or
/// overloaded process, a stuck disk). A TCP connect tells these apart.
pub(crate) async fn no_answer(cfg: &ConnectConfig, endpoint: &str, what: &str) -> Error {
    let addr = strip_scheme(endpoint)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let t = cfg.dial_timeout;
    let (kind, words) =
        match tokio::time::timeout(t, tokio::net::TcpStream::connect(addr.as_str())).await {
            Ok(Ok(_)) => (
                EtcdErrorKind::Timeout,
                format!(
                    "accepts connections but does not answer within {} (process frozen or overloaded, or stuck on its disk)",
                    humantime::format_duration(cfg.command_timeout)
                ),
            ),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
                EtcdErrorKind::Refused,
                "connection refused: nothing listens there (etcd not running, or a wrong port)"
                    .to_string(),
            ),
            Ok(Err(e)) => (
                EtcdErrorKind::Timeout,
                format!("cannot connect: {}", crate::error::io_words(&e)),
            ),
            Err(_) => (
                EtcdErrorKind::Timeout,
                format!(
                    "no connection within --dial-timeout {}: host down or a firewall drops the packets",
                    humantime::format_duration(t)
                ),
            ),
        };
    Error::etcd(endpoint, kind, format!("{what}: {words}"))
}

/// A failed call, classified; timeouts are refined by a TCP probe, and a plain-text
/// connection that broke at once by asking whether the server speaks TLS.
async fn call_failed(
    cfg: &ConnectConfig,
    endpoint: &str,
    what: &str,
    e: Option<&etcd_client::Error>,
) -> Error {
    match e.map(|e| errors::classify(cfg, endpoint, what, e)) {
        Some(Error::Etcd {
            kind: EtcdErrorKind::Timeout,
            ..
        })
        | None => no_answer(cfg, endpoint, what).await,
        Some(
            e @ Error::Etcd {
                kind: EtcdErrorKind::Broken,
                ..
            },
        ) => {
            // A connection that broke on the first call: TLS on one side only?
            let tls = cfg.tls_enabled() || endpoint.trim().starts_with("https://");
            match (tls, super::tls_probe::speaks_tls(cfg, endpoint).await) {
                (false, Some(true)) => Error::etcd(
                    endpoint,
                    EtcdErrorKind::Tls,
                    format!("{what}: {}", errors::speaks_tls_words(endpoint)),
                ),
                (true, Some(false)) => Error::etcd(
                    endpoint,
                    EtcdErrorKind::Tls,
                    format!("{what}: {}", errors::not_tls(endpoint)),
                ),
                _ => e,
            }
        }
        Some(other) => other,
    }
}

async fn ask(
    cfg: &ConnectConfig,
    endpoint: &str,
) -> (EndpointStatus, Vec<MemberInfo>, Option<Vec<AlarmInfo>>) {
    let t = cfg.command_timeout;
    let mut client = match cfg.connect_one(endpoint, false).await {
        Ok(c) => c,
        Err(e) => {
            let e = match e {
                Error::Etcd {
                    kind: EtcdErrorKind::Timeout,
                    ..
                } => no_answer(cfg, endpoint, "connect").await,
                e => e,
            };
            return (EndpointStatus::failed(endpoint, &e), vec![], None);
        }
    };
    let status = match tokio::time::timeout(t, client.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let e = call_failed(cfg, endpoint, "status", Some(&e)).await;
            return (EndpointStatus::failed(endpoint, &e), vec![], None);
        }
        Err(_) => {
            let e = call_failed(cfg, endpoint, "status", None).await;
            return (EndpointStatus::failed(endpoint, &e), vec![], None);
        }
    };
    let header = status.header();
    let mut st = EndpointStatus {
        endpoint: endpoint.to_string(),
        reachable: true,
        error: None,
        error_kind: None,
        member_id: header.map(|h| h.member_id()).unwrap_or(0),
        cluster_id: header.map(|h| h.cluster_id()).unwrap_or(0),
        leader: status.leader(),
        raft_term: status.raft_term(),
        raft_index: status.raft_index(),
        raft_applied_index: status.raft_applied_index(),
        revision: header.map(|h| h.revision()).unwrap_or(0),
        db_size: status.db_size(),
        db_size_in_use: status.raft_used_db_size(),
        version: status.version().to_string(),
        storage_version: status.storage_version().to_string(),
        is_learner: status.is_learner(),
        errors: status.errors().to_vec(),
        member_list: Vec::new(),
        quota_bytes: None,
    };
    let members = match tokio::time::timeout(t, client.member_list()).await {
        Ok(Ok(ml)) => ml
            .members()
            .iter()
            .map(|m| MemberInfo {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                client_urls: m.client_urls().to_vec(),
                is_learner: m.is_learner(),
            })
            .collect(),
        Ok(Err(e)) => {
            st.errors
                .push(errors::classify(cfg, endpoint, "member list", &e).to_string());
            vec![]
        }
        Err(_) => {
            st.errors
                .push(format!("member list: no answer within {t:?}"));
            vec![]
        }
    };
    st.member_list = members.iter().map(|m: &MemberInfo| m.id).collect();
    let alarms = match tokio::time::timeout(
        t,
        client.alarm(AlarmAction::Get, AlarmType::None, None),
    )
    .await
    {
        Ok(Ok(a)) => Some(
            a.alarms()
                .iter()
                .map(|a| AlarmInfo {
                    member_id: a.member_id(),
                    alarm: alarm_name(a.alarm()).to_string(),
                })
                .collect(),
        ),
        _ => None,
    };
    (st, members, alarms)
}

/// Ask every endpoint, concurrently, for its status, member list and the alarms.
///
/// Fails only when no endpoint answers; unreachable endpoints are part of the view.
pub async fn survey(cfg: &ConnectConfig) -> Result<ClusterView> {
    cfg.validate()?;
    let mut set = tokio::task::JoinSet::new();
    for (i, ep) in cfg.endpoints.iter().enumerate() {
        let cfg = cfg.clone();
        let ep = ep.clone();
        set.spawn(async move { (i, ask(&cfg, &ep).await) });
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(a) = r {
            answers.push(a);
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    let cluster_id = main_cluster(answers.iter().map(|(_, (st, _, _))| st));
    let mut endpoints = Vec::new();
    let mut members = Vec::new();
    let mut alarms = None;
    for (_, (st, ml, al)) in answers {
        // The member list and alarms of this cluster, not of an endpoint of another.
        if st.reachable && Some(st.cluster_id) == cluster_id {
            if members.is_empty() && !ml.is_empty() {
                members = ml;
            }
            if alarms.is_none() {
                alarms = al;
            }
        }
        endpoints.push(st);
    }
    if !endpoints.iter().any(|s| s.reachable) {
        return Err(nobody_answered(cfg, &endpoints));
    }
    let mut view = ClusterView {
        endpoints,
        members,
        alarms: alarms.unwrap_or_default(),
        cluster_id,
        leader: None,
        last_known_leader: None,
    };
    view.settle_leader();
    Ok(view)
}

/// The cluster id most answering endpoints report; on a tie, the first one's.
pub fn main_cluster<'a>(statuses: impl Iterator<Item = &'a EndpointStatus>) -> Option<u64> {
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for s in statuses.filter(|s| s.reachable) {
        match counts.iter_mut().find(|(c, _)| *c == s.cluster_id) {
            Some(c) => c.1 += 1,
            None => counts.push((s.cluster_id, 1)),
        }
    }
    // max_by_key keeps the last of equals: walk from the end so the first wins a tie.
    counts.iter().rev().max_by_key(|(_, n)| *n).map(|(c, _)| *c)
}

/// One error for "no endpoint answered": the same reason is said once for all the
/// endpoints that share it; the kind is transient if any endpoint's failure is (another
/// try may find that one back), else that of the first.
fn nobody_answered(cfg: &ConnectConfig, endpoints: &[EndpointStatus]) -> Error {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for s in endpoints {
        let why = s.error.clone().unwrap_or_default();
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some(g) => g.1.push(&s.endpoint),
            None => groups.push((why, vec![&s.endpoint])),
        }
    }
    let kinds: Vec<EtcdErrorKind> = endpoints.iter().filter_map(|s| s.error_kind).collect();
    let kind = kinds
        .iter()
        .copied()
        .find(|k| k.is_transient())
        .or_else(|| kinds.first().copied())
        .unwrap_or(EtcdErrorKind::Other);
    if groups.len() == 1 && endpoints.len() == 1 {
        return Error::etcd(&endpoints[0].endpoint, kind, groups[0].0.clone());
    }
    let words: Vec<String> = groups
        .iter()
        .map(|(why, eps)| format!("{}: {why}", eps.join(", ")))
        .collect();
    Error::etcd(
        cfg.endpoints.join(","),
        kind,
        format!("no endpoint answered: {}", words.join("; ")),
    )
}

/// Members whose applied index trails the leader's by more than this are called lagging.
pub const LAG_WARN_ENTRIES: u64 = 1000;

/// Human-readable warnings about the cluster: unreachable endpoints, alarms, lag.
pub fn warnings(view: &ClusterView) -> Vec<String> {
    let mut w = Vec::new();
    for s in &view.endpoints {
        if !s.reachable {
            w.push(format!(
                "endpoint {} unreachable: {}",
                s.endpoint,
                s.error.clone().unwrap_or_default()
            ));
        }
    }
    for a in &view.alarms {
        w.push(format!(
            "alarm {} raised on member {:x} ({})",
            a.alarm,
            a.member_id,
            view.name_of(a.member_id)
        ));
    }
    if let Some(leader) = view.leader.and_then(|l| view.status_of(l)) {
        for s in view.endpoints.iter().filter(|s| s.reachable) {
            let lag = leader
                .raft_applied_index
                .saturating_sub(s.raft_applied_index);
            if lag > LAG_WARN_ENTRIES {
                w.push(format!(
                    "member {:x} ({}) lags the leader by {lag} raft entries",
                    s.member_id,
                    view.name_of(s.member_id)
                ));
            }
        }
    }
    if view.leader.is_none() {
        let q = view.quorum();
        let mut line = format!(
            "no leader: {} of {} members answer; {} needed for quorum",
            q.alive, q.voters, q.needed
        );
        if let Some(l) = view.last_known_leader {
            line.push_str(&format!(
                "; last known leader {:x} ({}) at raft term {}",
                l.id,
                view.name_of(l.id),
                l.raft_term
            ));
        }
        w.push(line);
    }
    w
}

/// Back-off before retry `attempt` (1-based): 1 s, 2 s, 4 s, ... at most 10 s; long enough
/// for a new leader to be elected after the old one died.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(4);
    Duration::from_secs(secs.min(10))
}
