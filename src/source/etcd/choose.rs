//! Which member to stream a snapshot from, and why.

use std::str::FromStr;

use super::ClusterView;
use crate::format::etcd::MemberId;
use crate::{Error, Result};

/// `--source leader|freshest|NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePolicy {
    /// The leader: its data is committed by definition (the default).
    Leader,
    /// The reachable member with the highest raft term and applied index.
    Freshest,
    /// One member, by name or hex id.
    Member(String),
}

impl FromStr for SourcePolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" => Err("empty --source".into()),
            "leader" => Ok(SourcePolicy::Leader),
            "freshest" => Ok(SourcePolicy::Freshest),
            other => Ok(SourcePolicy::Member(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub endpoint: String,
    pub member_id: u64,
    pub name: String,
    pub reason: String,
}

/// Pick the member to stream from. `exclude` lists members whose stream already failed in
/// this run; they are passed over while another candidate exists.
pub fn choose(view: &ClusterView, policy: &SourcePolicy, exclude: &[u64]) -> Result<Choice> {
    let candidates: Vec<_> = view
        .endpoints
        .iter()
        .filter(|s| s.reachable && s.member_id != 0)
        .collect();
    let pick = |id: u64, endpoint: &str, reason: String| Choice {
        endpoint: endpoint.to_string(),
        member_id: id,
        name: view.name_of(id),
        reason,
    };
    match policy {
        SourcePolicy::Member(want) => {
            let id = view
                .members
                .iter()
                .find(|m| m.name == *want || MemberId(m.id) == **want)
                .map(|m| m.id)
                .ok_or_else(|| {
                    let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
                    Error::Usage(format!(
                        "--source {want}: no such member (members: {})",
                        names.join(", ")
                    ))
                })?;
            let st = view.status_of(id).ok_or_else(|| Error::Etcd {
                endpoint: want.clone(),
                kind: crate::error::EtcdErrorKind::Unavailable,
                message: format!(
                    "member {want} ({id:x}) did not answer on any of the given endpoints"
                ),
            })?;
            Ok(pick(
                id,
                &st.endpoint,
                format!("asked for with --source {want}"),
            ))
        }
        SourcePolicy::Leader => {
            if let Some(l) = view.leader.filter(|l| !exclude.contains(l)) {
                if let Some(st) = view.status_of(l) {
                    return Ok(pick(
                        l,
                        &st.endpoint,
                        format!("leader at raft term {}", st.raft_term),
                    ));
                }
                // Only a leader outside the endpoints asked is dialled by its advertised
                // URL; one that was asked and failed its status call is passed over.
                if view.failed_to_answer(l).is_none() {
                    if let Some(url) = view.member(l).and_then(|m| m.client_urls.first()) {
                        return Ok(pick(
                            l,
                            url,
                            "leader (not among --endpoints; using its advertised client URL)"
                                .into(),
                        ));
                    }
                }
            }
            let why = match (view.leader, view.last_known_leader) {
                (None, None) => "no leader is known".to_string(),
                (None, Some(last)) => format!(
                    "no leader now (last known leader {:x} does not answer)",
                    last.id
                ),
                (Some(l), _) if exclude.contains(&l) => {
                    format!("leader {l:x} failed earlier in this run")
                }
                (Some(l), _) => match view.failed_to_answer(l) {
                    Some(s) => format!(
                        "leader {l:x} did not answer its status call ({})",
                        s.error.clone().unwrap_or_default()
                    ),
                    None => format!("leader {l:x} cannot be reached"),
                },
            };
            let mut c = choose(view, &SourcePolicy::Freshest, exclude)?;
            c.reason = format!("{why}; {}", c.reason);
            Ok(c)
        }
        SourcePolicy::Freshest => {
            let best = |pool: Vec<&&super::EndpointStatus>| {
                pool.into_iter()
                    .max_by_key(|s| (s.raft_term, s.raft_applied_index, s.revision, !s.is_learner))
                    .map(|s| (*s).clone())
            };
            let fresh: Vec<_> = candidates
                .iter()
                .filter(|s| !exclude.contains(&s.member_id))
                .collect();
            let chosen = best(fresh).or_else(|| best(candidates.iter().collect()));
            let s = chosen.ok_or_else(|| Error::Etcd {
                endpoint: view
                    .endpoints
                    .iter()
                    .map(|s| s.endpoint.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                kind: crate::error::EtcdErrorKind::Unavailable,
                message: "no member is reachable".into(),
            })?;
            Ok(pick(
                s.member_id,
                &s.endpoint,
                format!(
                    "freshest reachable member (raft term {}, applied index {})",
                    s.raft_term, s.raft_applied_index
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClusterView, EndpointStatus, MemberInfo};
    use super::*;

    fn st(ep: &str, id: u64, leader: u64, term: u64, applied: u64) -> EndpointStatus {
        EndpointStatus {
            endpoint: ep.into(),
            reachable: true,
            error: None,
            error_kind: None,
            member_id: id,
            cluster_id: 9,
            leader,
            raft_term: term,
            raft_index: applied,
            raft_applied_index: applied,
            revision: 1,
            db_size: 0,
            db_size_in_use: 0,
            version: "3.5.1".into(),
            storage_version: String::new(),
            is_learner: false,
            errors: vec![],
            member_list: vec![],
            quota_bytes: None,
        }
    }

    fn view(endpoints: Vec<EndpointStatus>, leader: Option<u64>) -> ClusterView {
        ClusterView {
            members: (1..=3)
                .map(|i| MemberInfo {
                    id: i,
                    name: format!("m{i}"),
                    peer_urls: vec![],
                    client_urls: vec![format!("http://m{i}:2379")],
                    is_learner: false,
                })
                .collect(),
            endpoints,
            alarms: vec![],
            cluster_id: Some(9),
            leader,
            last_known_leader: None,
        }
    }

    #[test]
    fn leader_by_default_then_freshest_when_it_failed() {
        let v = view(
            vec![
                st("a", 1, 2, 5, 100),
                st("b", 2, 2, 5, 101),
                st("c", 3, 2, 5, 90),
            ],
            Some(2),
        );
        let c = choose(&v, &SourcePolicy::Leader, &[]).unwrap();
        assert_eq!((c.member_id, c.endpoint.as_str()), (2, "b"));
        assert!(c.reason.contains("leader"));
        let c = choose(&v, &SourcePolicy::Leader, &[2]).unwrap();
        assert_eq!(c.member_id, 1);
        assert!(c.reason.contains("failed earlier"), "{}", c.reason);
    }

    #[test]
    fn named_member_and_unknown_name() {
        let v = view(vec![st("a", 1, 1, 5, 100), st("c", 3, 1, 5, 90)], Some(1));
        assert_eq!(
            choose(&v, &SourcePolicy::Member("m3".into()), &[])
                .unwrap()
                .endpoint,
            "c"
        );
        assert_eq!(
            choose(&v, &SourcePolicy::Member("3".into()), &[])
                .unwrap()
                .member_id,
            3
        );
        assert!(matches!(
            choose(&v, &SourcePolicy::Member("zz".into()), &[]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            choose(&v, &SourcePolicy::Member("m2".into()), &[]),
            Err(Error::Etcd { .. })
        ));
    }

    #[test]
    fn leader_outside_endpoints_uses_its_client_url() {
        let v = view(vec![st("a", 1, 3, 5, 100)], Some(3));
        let c = choose(&v, &SourcePolicy::Leader, &[]).unwrap();
        assert_eq!(c.endpoint, "http://m3:2379");
    }

    #[test]
    fn a_leader_that_failed_its_status_call_is_not_chosen() {
        // m2 leads, is in --endpoints by its client URL, and did not answer just now.
        let mut dead = EndpointStatus::unreachable(
            "http://m2:2379",
            "status: accepts connections but does not answer".into(),
        );
        dead.error_kind = Some(crate::error::EtcdErrorKind::Timeout);
        let v = view(
            vec![
                st("http://m1:2379", 1, 2, 5, 100),
                dead,
                st("http://m3:2379", 3, 2, 5, 101),
            ],
            Some(2),
        );
        let c = choose(&v, &SourcePolicy::Leader, &[]).unwrap();
        assert_eq!(c.member_id, 3, "{c:?}");
        assert!(c.reason.contains("did not answer"), "{}", c.reason);
        assert!(!c.reason.contains("advertised"), "{}", c.reason);
    }

    #[test]
    fn survivors_naming_a_dead_leader_do_not_make_it_leader() {
        let mut dead = EndpointStatus::unreachable("http://m2:2379", "refused".into());
        dead.error_kind = Some(crate::error::EtcdErrorKind::Refused);
        let mut dead3 = EndpointStatus::unreachable("http://m3:2379", "refused".into());
        dead3.error_kind = Some(crate::error::EtcdErrorKind::Refused);
        let mut v = view(vec![st("http://m1:2379", 1, 2, 5, 100), dead, dead3], None);
        v.settle_leader();
        assert_eq!(v.leader, None);
        assert_eq!(v.last_known_leader.map(|l| l.id), Some(2));
        let q = v.quorum();
        assert_eq!((q.alive, q.needed, q.voters), (1, 2, 3));
        let c = choose(&v, &SourcePolicy::Leader, &[]).unwrap();
        assert_eq!(c.member_id, 1);
        assert!(c.reason.contains("no leader now"), "{}", c.reason);
    }
}
