//! Who answers and whether they agree: unreachable endpoints and members (and how they
//! fail), the quorum, the leader and raft terms, the member list and the cluster id.

use super::doctor::{Exam, Level, MemberRow};
use super::PeerProbe;
use crate::error::EtcdErrorKind;
use crate::format::etcd::{ClusterId, MemberId};
use crate::source::etcd::{strip_scheme, EndpointStatus, MemberInfo};

/// The endpoint's failure in words that tell refused, frozen, dial timeout and TLS apart.
fn client_words(s: &EndpointStatus) -> String {
    let e = s.error.clone().unwrap_or_default();
    match s.error_kind {
        Some(EtcdErrorKind::Refused) => format!("its client URL {} refuses connections ({e})", s.endpoint),
        Some(EtcdErrorKind::Timeout) if e.contains("accepts connections") => format!(
            "its client URL {} accepts connections but does not answer: the process is frozen (stopped, e.g. SIGSTOP), overloaded, or stuck on its disk",
            s.endpoint
        ),
        Some(EtcdErrorKind::Tls) => format!("TLS with {} fails: {e}", s.endpoint),
        _ => format!("{}: {e}", s.endpoint),
    }
}

/// What the peer port says about a member whose client URL failed in `client` way.
fn peer_words(p: &PeerProbe, client: Option<EtcdErrorKind>) -> String {
    match (&p.error, client) {
        (None, Some(EtcdErrorKind::Refused)) => format!(
            "its peer URL {} accepts connections, so etcd runs there but does not serve clients on that client URL (check its --listen-client-urls / --advertise-client-urls)",
            p.url
        ),
        (None, _) => format!("its peer URL {} accepts connections", p.url),
        (Some(_), _) if p.refused => format!(
            "its peer URL {} refuses connections too: etcd is not running there",
            p.url
        ),
        (Some(e), _) => format!(
            "its peer URL {} does not answer either ({e}): host down, or a firewall",
            p.url
        ),
    }
}

/// Unreachable endpoints given on the command line that are no member's client URL (those
/// are reported per member).
pub(super) fn check_stray_endpoints(x: &mut Exam<'_>) {
    let is_member_url = |ep: &str| {
        x.view.members.iter().any(|m| {
            m.client_urls
                .iter()
                .any(|u| strip_scheme(u) == strip_scheme(ep))
        })
    };
    let stray: Vec<&EndpointStatus> = x
        .view
        .endpoints
        .iter()
        .filter(|s| !s.reachable && !is_member_url(&s.endpoint))
        .collect();
    for s in stray {
        let remedy = match s.error_kind {
            Some(EtcdErrorKind::Tls) => "Fix the TLS flags as the message says (--cacert, --cert, --key, or the URL's scheme).".to_string(),
            _ => format!(
                "Check that this endpoint belongs to the cluster (`{}` lists the members' client URLs) and fix --endpoints.",
                x.cluster.ctl("member list -w table")
            ),
        };
        x.push(
            Level::Error,
            "endpoint-unreachable",
            format!(
                "endpoint {} does not answer: {}",
                s.endpoint,
                client_words(s)
            ),
            remedy,
        );
    }
}

/// Members of the member list that no endpoint speaks for.
pub(super) fn check_members(x: &mut Exam<'_>) {
    let view = x.view;
    for m in &view.members {
        // A member of another cluster answering in its place is cluster-id-mismatch's.
        if view.status_of(m.id).is_some()
            || view.foreign_at(m.id).is_some()
            || super::foreign::other_at_peer(x, m.id).is_some()
        {
            continue;
        }
        if m.name.is_empty() && m.client_urls.is_empty() {
            if super::foreign::unstarted_in_place(x, m).is_some() {
                continue;
            }
            let initial = x.cluster.initial_cluster();
            x.push(
                Level::Error,
                "member-unstarted",
                format!("member {} was added but has never started", MemberId(m.id)),
                format!(
                    "Start etcd on {} with --initial-cluster-state=existing and --initial-cluster={initial},NAME={}; or remove it: `{}`.",
                    x.cluster.host_of(m),
                    m.peer_urls.first().map(String::as_str).unwrap_or("PEER_URL"),
                    x.cluster.ctl(&format!("member remove {:x}", m.id))
                ),
            );
            continue;
        }
        let failed = view.failed_to_answer(m.id);
        let mut why = match failed {
            Some(s) => client_words(s),
            None => format!(
                "not asked: none of its client URLs ({}) is among the endpoints",
                m.client_urls.join(", ")
            ),
        };
        if let Some(p) = x.probes.iter().find(|p| p.member_id == m.id) {
            why.push_str("; ");
            why.push_str(&peer_words(p, failed.and_then(|s| s.error_kind)));
        }
        let remedy = unreachable_remedy(x, m, failed.and_then(|s| s.error_kind));
        x.push(
            Level::Error,
            "member-unreachable",
            format!("member {} is unreachable: {why}", x.name(m.id)),
            remedy,
        );
    }
}

fn unreachable_remedy(x: &Exam<'_>, m: &MemberInfo, kind: Option<EtcdErrorKind>) -> String {
    let host = x.cluster.host_of(m);
    let first = match kind {
        Some(EtcdErrorKind::Timeout) => format!(
            "On {host}: `ps -o pid,stat,etime,cmd -C etcd` (state T: the process is stopped; `kill -CONT <pid>`), then `journalctl -u etcd -n 100` for `slow fdatasync` or disk errors."
        ),
        Some(EtcdErrorKind::Tls) => "Fix the TLS flags as the message says (--cacert, --cert, --key, or the URL's scheme).".to_string(),
        _ => format!(
            "On {host}: `systemctl status etcd` (or the static pod: `crictl ps -a --name etcd`) and `journalctl -u etcd -n 100`; start etcd if it is down."
        ),
    };
    format!(
        "{first} If it cannot start (`wal: crc mismatch`): `lifeboat check-member <its data dir>`; to replace a damaged member: {}.",
        x.cluster.replace_member(m)
    )
}

pub(super) fn check_quorum(x: &mut Exam<'_>) {
    let q = x.view.quorum();
    if q.holds() {
        return;
    }
    let down: Vec<String> = x
        .view
        .members
        .iter()
        .filter(|m| !m.is_learner && x.view.status_of(m.id).is_none())
        .map(|m| x.name(m.id))
        .collect();
    let remedy = format!(
        "Bring back the members that are down ({}) if their data is intact (see member-unreachable). If they cannot come back, restore every member from one snapshot: `lifeboat fetch --from DEST latest --out snap.db`, then on each member with its own name and peer URL: `etcdutl snapshot restore snap.db --name NAME --initial-advertise-peer-urls PEER_URL --initial-cluster {} --initial-cluster-token NEW_TOKEN --data-dir NEW_DIR`, and start all members on their new data dirs.",
        down.join(", "),
        x.cluster.initial_cluster()
    );
    x.push(
        Level::Error,
        "quorum-lost",
        format!(
            "quorum lost: {} of {} members answer; {} needed for quorum",
            q.alive, q.voters, q.needed
        ),
        remedy,
    );
}

pub(super) fn check_leader_and_terms(x: &mut Exam<'_>) {
    let leaders = x.distinct(|s| s.leader);
    if x.view.leader.is_none() || leaders.contains(&0) {
        let q = x.view.quorum();
        let mut message = format!(
            "no leader: {} of {} members answer; {} needed for quorum",
            q.alive, q.voters, q.needed
        );
        if let Some(l) = x.view.last_known_leader {
            message.push_str(&format!(
                "; last known leader {} at raft term {}",
                x.name(l.id),
                l.raft_term
            ));
        }
        let remedy = if q.holds() {
            format!(
                "An election is under way or members cannot reach each other's peer URLs (2380): run `{}` again; if it persists, look for `starting a new election at term` in the members' logs (slow disks: `slow fdatasync`; or the network).",
                x.cluster.ctl("endpoint status -w table")
            )
        } else {
            "Restore quorum first (see quorum-lost).".to_string()
        };
        x.push(Level::Error, "no-leader", message, remedy);
    } else if leaders.len() > 1 {
        let names: Vec<String> = leaders.iter().map(|&l| x.name(l)).collect();
        let remedy = format!(
            "An election is probably in progress: run `{}` again; if it persists, look for a partitioned member (its peer URL unreachable from the others).",
            x.cluster.ctl("endpoint status -w table")
        );
        x.push(
            Level::Warning,
            "leader-disagreement",
            format!("members name different leaders: {}", names.join(", ")),
            remedy,
        );
    }
    let terms = x.distinct(|s| s.raft_term);
    if terms.len() > 1 {
        let remedy = format!(
            "Run `{}` again: every member should show the same RAFT TERM. A member behind is partitioned or restarting; frequent term changes mean elections (slow disks or network).",
            x.cluster.ctl("endpoint status -w table")
        );
        x.push(
            Level::Warning,
            "term-disagreement",
            format!("members are in different raft terms: {terms:?}"),
            remedy,
        );
    }
}

/// Every endpoint must report the same member list and cluster id.
pub(super) fn check_agreement(x: &mut Exam<'_>) {
    let lists: Vec<Vec<u64>> = {
        let mut v: Vec<Vec<u64>> = x
            .reachable
            .iter()
            .filter(|s| !s.member_list.is_empty())
            .map(|s| {
                let mut l = s.member_list.clone();
                l.sort_unstable();
                l
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if lists.len() > 1 {
        let shown: Vec<String> = lists
            .iter()
            .map(|l| {
                format!(
                    "[{}]",
                    l.iter()
                        .map(|&i| MemberId(i).to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect();
        let remedy = format!(
            "Compare `{}` on each endpoint; the member whose list differs has stale state (`failed to find member` in its log): replace it as for member-unreachable.",
            x.cluster.ctl("member list -w table")
        );
        x.push(
            Level::Error,
            "member-list-disagreement",
            format!(
                "endpoints disagree on the member list: {}",
                shown.join(" vs ")
            ),
            remedy,
        );
    }
    // Endpoints of another cluster id: see super::foreign.
}

/// Members listed but not answering get a row too, with why.
pub(super) fn unreachable_rows(x: &Exam<'_>) -> Vec<MemberRow> {
    x.view
        .members
        .iter()
        .filter(|m| x.view.status_of(m.id).is_none() && x.view.foreign_at(m.id).is_none())
        .map(|m| MemberRow {
            id: MemberId(m.id),
            name: m.name.clone(),
            endpoint: m.client_urls.first().cloned(),
            reachable: false,
            is_leader: false,
            is_learner: m.is_learner,
            raft_term: 0,
            raft_index: 0,
            raft_applied_index: 0,
            lag: None,
            db_size: 0,
            db_size_in_use: 0,
            quota_used_pct: 0.0,
            quota_bytes: 0,
            other_cluster_id: super::foreign::other_at_peer(x, m.id)
                .and_then(|p| p.cluster_id)
                .map(ClusterId),
            version: String::new(),
            storage_version: String::new(),
            revision: 0,
            error: match super::foreign::other_at_peer(x, m.id) {
                // Not frozen: an etcd of another cluster without a leader (cluster-id-mismatch).
                Some(_) => {
                    Some("its client URL does not answer: no leader in its own cluster".into())
                }
                None => x.view.failed_to_answer(m.id).and_then(|s| s.error.clone()),
            },
        })
        .collect()
}
