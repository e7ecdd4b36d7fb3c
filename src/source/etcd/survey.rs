//! What the cluster looks like right now, asked of every endpoint at once.

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmType};
use serde::Serialize;

use super::ConnectConfig;
use crate::{Error, Result};

/// One endpoint's answer to `Maintenance.Status` (or why there was none).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub reachable: bool,
    pub error: Option<String>,
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
    pub is_learner: bool,
    /// Errors the member itself reports (e.g. "NOSPACE" alarm text).
    pub errors: Vec<String>,
    /// Member ids in this endpoint's member list (to see whether endpoints agree).
    pub member_list: Vec<u64>,
}

impl EndpointStatus {
    /// The status of an endpoint that did not answer, and why.
    pub fn unreachable(endpoint: &str, error: String) -> Self {
        EndpointStatus {
            endpoint: endpoint.to_string(),
            reachable: false,
            error: Some(error),
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
            is_learner: false,
            errors: Vec::new(),
            member_list: Vec::new(),
        }
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
    /// The member list of the first endpoint that answered.
    pub members: Vec<MemberInfo>,
    pub alarms: Vec<AlarmInfo>,
    pub cluster_id: Option<u64>,
    /// The leader most reachable endpoints agree on.
    pub leader: Option<u64>,
}

impl ClusterView {
    pub fn member(&self, id: u64) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }
    pub fn status_of(&self, id: u64) -> Option<&EndpointStatus> {
        self.endpoints
            .iter()
            .find(|s| s.reachable && s.member_id == id)
    }
    pub fn name_of(&self, id: u64) -> String {
        self.member(id).map(|m| m.name.clone()).unwrap_or_default()
    }
}

pub fn alarm_name(t: AlarmType) -> &'static str {
    match t {
        AlarmType::None => "NONE",
        AlarmType::Nospace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
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
            return (
                EndpointStatus::unreachable(endpoint, e.to_string()),
                vec![],
                None,
            )
        }
    };
    let status = match tokio::time::timeout(t, client.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return (
                EndpointStatus::unreachable(endpoint, format!("status: {e}")),
                vec![],
                None,
            )
        }
        Err(_) => {
            return (
                EndpointStatus::unreachable(endpoint, format!("status: no answer within {t:?}")),
                vec![],
                None,
            )
        }
    };
    let header = status.header();
    let mut st = EndpointStatus {
        endpoint: endpoint.to_string(),
        reachable: true,
        error: None,
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
        is_learner: status.is_learner(),
        errors: status.errors().to_vec(),
        member_list: Vec::new(),
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
            st.errors.push(format!("member list: {e}"));
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
    let mut endpoints = Vec::new();
    let mut members = Vec::new();
    let mut alarms = None;
    for (_, (st, ml, al)) in answers {
        if members.is_empty() && !ml.is_empty() {
            members = ml;
        }
        if alarms.is_none() {
            alarms = al;
        }
        endpoints.push(st);
    }
    if !endpoints.iter().any(|s| s.reachable) {
        let why: Vec<String> = endpoints
            .iter()
            .map(|s| format!("{}: {}", s.endpoint, s.error.clone().unwrap_or_default()))
            .collect();
        return Err(Error::Etcd {
            endpoint: cfg.endpoints.join(","),
            kind: crate::error::EtcdErrorKind::Other,
            message: format!("no endpoint answered ({})", why.join("; ")),
        });
    }
    let mut votes: Vec<(u64, usize)> = Vec::new();
    for s in endpoints.iter().filter(|s| s.reachable && s.leader != 0) {
        match votes.iter_mut().find(|(l, _)| *l == s.leader) {
            Some(v) => v.1 += 1,
            None => votes.push((s.leader, 1)),
        }
    }
    votes.sort_by_key(|v| std::cmp::Reverse(v.1));
    let leader = votes.first().map(|v| v.0);
    let cluster_id = endpoints.iter().find(|s| s.reachable).map(|s| s.cluster_id);
    Ok(ClusterView {
        endpoints,
        members,
        alarms: alarms.unwrap_or_default(),
        cluster_id,
        leader,
    })
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
        w.push("no member reports a leader (quorum lost?)".into());
    }
    w
}

/// Back-off before retry `attempt` (1-based): 1 s, 2 s, 4 s, ... at most 10 s; long enough
/// for a new leader to be elected after the old one died.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(4);
    Duration::from_secs(secs.min(10))
}
