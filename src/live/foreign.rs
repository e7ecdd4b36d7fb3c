//! Endpoints that answer for another cluster id: a member restored from another plan, an
//! old member's data dir restarted, or an endpoint of another cluster given by mistake.
//! They are one finding, `cluster-id-mismatch`, naming each such member, its cluster id and
//! the member of this cluster expected at that URL; the other checks judge this cluster
//! only (such a member is neither "unreachable" nor "added but never started").

use super::doctor::{Exam, Level, MemberRow};
use crate::format::etcd::{ClusterId, MemberId};
use crate::source::etcd::{strip_scheme, EndpointStatus, MemberInfo};

/// The member of this cluster whose client URL `s` answers at, if any.
fn expected_at<'a>(x: &Exam<'a>, s: &EndpointStatus) -> Option<&'a MemberInfo> {
    x.view.members.iter().find(|m| {
        m.client_urls
            .iter()
            .any(|u| strip_scheme(u) == strip_scheme(&s.endpoint))
    })
}

fn host_of(url: &str) -> &str {
    let hp = strip_scheme(url).split('/').next().unwrap_or_default();
    hp.rsplit_once(':').map_or(hp, |(h, _)| h)
}

/// For a member added but never started (no name, no client URL): the endpoint of another
/// cluster on its host, which most likely runs where it should.
pub(super) fn unstarted_in_place<'a>(x: &Exam<'a>, m: &MemberInfo) -> Option<&'a EndpointStatus> {
    let hosts: Vec<&str> = m.peer_urls.iter().map(|u| host_of(u)).collect();
    x.view
        .foreign()
        .find(|s| hosts.contains(&host_of(&s.endpoint)))
}

/// The member added but never started that `s` (of another cluster) runs in place of.
fn unstarted_at<'a>(x: &Exam<'a>, s: &EndpointStatus) -> Option<&'a MemberInfo> {
    x.view.members.iter().find(|m| {
        m.name.is_empty()
            && m.client_urls.is_empty()
            && unstarted_in_place(x, m).is_some_and(|f| f.endpoint == s.endpoint)
    })
}

/// The member's peer URL answers for another cluster (its client URL answers nothing: an
/// etcd without a leader, e.g. a member restored from another plan and alone there).
pub(super) fn other_at_peer<'a>(x: &Exam<'a>, id: u64) -> Option<&'a super::PeerProbe> {
    let ours = x.view.cluster_id?;
    x.probes
        .iter()
        .find(|p| p.member_id == id && p.cluster_id.is_some_and(|c| c != ours))
}

pub(super) fn check_foreign(x: &mut Exam<'_>) {
    let foreign: Vec<&EndpointStatus> = x.view.foreign().collect();
    let by_peer: Vec<(&MemberInfo, &super::PeerProbe)> = x
        .view
        .members
        .iter()
        .filter_map(|m| other_at_peer(x, m.id).map(|p| (m, p)))
        .collect();
    if foreign.is_empty() && by_peer.is_empty() {
        return;
    }
    let ours = ClusterId(x.view.cluster_id.unwrap_or(0));
    let answering = x.reachable.len();
    let tie = answering <= foreign.len();
    let mut whats = Vec::new();
    let mut fixes = Vec::new();
    for s in &foreign {
        let here = format!(
            "{} answers as member {} of cluster {}",
            s.endpoint,
            MemberId(s.member_id),
            ClusterId(s.cluster_id)
        );
        let host = host_of(&s.endpoint).to_string();
        if let Some(m) = unstarted_at(x, s).filter(|_| expected_at(x, s).is_none()) {
            let peer = m
                .peer_urls
                .first()
                .map(String::as_str)
                .unwrap_or("PEER_URL");
            whats.push(format!(
                "{here}, on the host where this cluster has member {} added but never started (peer URL {peer}): the etcd there was started from another cluster's data, not as that member",
                MemberId(m.id)
            ));
            fixes.push(format!(
                "on {host}: stop that etcd and move its data dir aside (keep it: it may hold writes made to it); then start etcd there on an empty data dir as the added member, with the name, peer URL and initial cluster that `member add` printed (or remove the added member: `{}`)",
                x.cluster.ctl(&format!("member remove {:x}", m.id))
            ));
            continue;
        }
        match expected_at(x, s) {
            Some(m) => {
                whats.push(format!(
                    "{here}, where this cluster expects its member {}: that member is not running, something of another cluster runs in its place",
                    x.name(m.id)
                ));
                fixes.push(format!(
                    "on {host}: stop that etcd and move its data dir aside (keep it: it may hold writes made to it); then give {name} this cluster's data: mid-restore, re-apply the plan the other members run (`lifeboat restore apply --plan DIR --node {name} --force`, then start it as the RUNBOOK says); otherwise replace the member: `lifeboat restore plan --mode replace-member --member {name} --topology FILE --out DIR` writes the steps",
                    name = if m.name.is_empty() { "NAME".to_string() } else { m.name.clone() }
                ));
            }
            None => {
                whats.push(format!(
                    "{here}, and this cluster lists no member at that URL"
                ));
                fixes.push(format!(
                    "{}: if it was given by mistake, drop it from --endpoints (ETCDCTL_ENDPOINTS, [etcd] endpoints); if it should be a member of this cluster, stop it, move its data dir aside and add it as a new member (`{}`, then start it on an empty data dir as that command prints)",
                    s.endpoint,
                    x.cluster.ctl("member add NAME --peer-urls=PEER_URL")
                ));
            }
        }
    }
    for (m, p) in &by_peer {
        let name = if m.name.is_empty() {
            "NAME".to_string()
        } else {
            m.name.clone()
        };
        whats.push(format!(
            "member {}: its peer URL {} answers for cluster {}, and its client URL does not answer: the etcd there was started from another cluster's data and has no leader in that cluster",
            x.name(m.id),
            p.url,
            ClusterId(p.cluster_id.unwrap_or(0))
        ));
        fixes.push(format!(
            "on {}: stop that etcd and move its data dir aside (keep it: it may hold writes made to it); then give {name} this cluster's data: mid-restore, re-apply the plan the other members run (`lifeboat restore apply --plan DIR --node {name} --force`, then start it as the RUNBOOK says); otherwise replace the member: `lifeboat restore plan --mode replace-member --member {name} --topology FILE --out DIR` writes the steps",
            host_of(&p.url)
        ));
    }
    let judged = if tie {
        format!(
            "no majority among the endpoints, so the first one's cluster {ours} is taken as this cluster"
        )
    } else {
        format!("this cluster is {ours}, answered by {answering} endpoint(s)")
    };
    let message = format!(
        "member from another cluster: {} ({judged}). Members of different clusters never exchange data: that member's data is not this cluster's, and writes sent to it never reach this cluster",
        whats.join("; ")
    );
    let remedy = format!(
        "Decide which cluster is the real one (the one your clients and the other members use). If it is {ours}: {}. If it is the other one, do the same to the members of {ours} instead.",
        fixes.join("; ")
    );
    x.push(Level::Error, "cluster-id-mismatch", message, remedy);
}

/// A row for each endpoint of another cluster: what it said, and its cluster id.
pub(super) fn foreign_rows(x: &Exam<'_>) -> Vec<MemberRow> {
    x.view
        .foreign()
        .map(|s| MemberRow {
            id: MemberId(s.member_id),
            // Its own name is not this cluster's to tell; the finding names the member
            // expected at that URL.
            name: String::new(),
            endpoint: Some(s.endpoint.clone()),
            reachable: true,
            is_leader: false,
            is_learner: s.is_learner,
            raft_term: s.raft_term,
            raft_index: s.raft_index,
            raft_applied_index: s.raft_applied_index,
            lag: None,
            db_size: s.db_size.max(0) as u64,
            db_size_in_use: s.db_size_in_use.max(0) as u64,
            quota_used_pct: 0.0,
            quota_bytes: 0,
            other_cluster_id: Some(ClusterId(s.cluster_id)),
            version: s.version.clone(),
            storage_version: s.storage_version.clone(),
            revision: s.revision,
            error: None,
        })
        .collect()
}
