//! The live cluster doctor behind `lifeboat status`: the checks operators run by hand
//! (member list on every endpoint, endpoint status, health, alarms, the db size against its
//! quota) turned into findings. Each finding has a stable check name, the commands to run
//! with this cluster's values, and a section of docs/cluster-health.md of the same name.
//! Pure: it judges a [`ClusterView`] that [`super::gather()`] collected.

use serde::Serialize;

use super::foreign::{check_foreign, foreign_rows};
use super::member_state::{check_alarms, check_member_status, check_size_drift};
use super::membership::{
    check_agreement, check_leader_and_terms, check_members, check_quorum, check_stray_endpoints,
    unreachable_rows,
};
use super::remedy::{doc_link, Cluster};
use super::versions::check_versions;
use super::PeerProbe;
use crate::format::etcd::{ClusterId, MemberId};
use crate::source::etcd::{ClusterView, EndpointStatus, Quorum};

/// Every check name: each has a section of that anchor in docs/cluster-health.md.
pub const CHECKS: &[&str] = &[
    "endpoint-unreachable",
    "member-unreachable",
    "member-unstarted",
    "quorum-lost",
    "no-leader",
    "leader-disagreement",
    "term-disagreement",
    "member-list-disagreement",
    "cluster-id-mismatch",
    "member-lagging",
    "db-near-quota",
    "db-fragmented",
    "db-size-drift",
    "member-error",
    "version-skew",
    "learner",
    "alarm-nospace",
    "alarm-corrupt",
    "alarm",
];

/// etcd's default `--quota-backend-bytes`.
pub const DEFAULT_QUOTA: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The cluster is unhealthy (exit 4).
    Error,
    /// Worth acting on soon.
    Warning,
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    /// Stable short name for scripts: `member-unreachable`, `no-leader`, `alarm-nospace`, ...
    /// It is also the anchor of its section in docs/cluster-health.md.
    pub check: &'static str,
    pub message: String,
    /// The commands to run, with this cluster's values.
    pub remedy: String,
    /// `docs/cluster-health.md#<check>`.
    pub doc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub id: MemberId,
    pub name: String,
    pub endpoint: Option<String>,
    pub reachable: bool,
    pub is_leader: bool,
    pub is_learner: bool,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    /// Leader's raft index minus this member's.
    pub lag: Option<u64>,
    pub db_size: u64,
    pub db_size_in_use: u64,
    /// db size as a percentage of the quota.
    pub quota_used_pct: f64,
    /// The quota that percentage is of: --quota-bytes, else the member's /metrics, else
    /// etcd's default.
    pub quota_bytes: u64,
    /// Set when this endpoint answered for another cluster than the report's: its cluster
    /// id (hex). Such a member is no member of this cluster (see `cluster-id-mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cluster_id: Option<ClusterId>,
    pub version: String,
    /// What the member reports as its storage version (etcd 3.6+).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub storage_version: String,
    pub revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub cluster_id: Option<ClusterId>,
    /// The leader now (hex id); `None` when no leader answers or quorum is lost.
    pub leader: Option<MemberId>,
    /// When there is no leader: the one the surviving members last followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_known_leader: Option<LastLeaderRow>,
    /// Voting members that answer, and how many a quorum needs.
    pub quorum: Quorum,
    /// The quota the members' db sizes are judged against (each row has its own).
    pub quota_bytes: u64,
    /// Where `quota_bytes` comes from: `flag` (--quota-bytes), `metrics` (the members'
    /// `etcd_server_quota_backend_bytes`) or `default` (etcd's 2 GiB: /metrics did not say).
    pub quota_source: &'static str,
    pub members: Vec<MemberRow>,
    pub alarms: Vec<String>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastLeaderRow {
    pub id: MemberId,
    pub name: String,
    pub raft_term: u64,
}

/// Thresholds of the checks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--quota-bytes`: overrides what each member's /metrics says.
    pub quota_bytes: Option<u64>,
    /// Raft entries behind the leader before a member is called lagging.
    pub lag_entries: u64,
    /// Percentage of the quota before the db size is a warning.
    pub quota_warn_pct: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            quota_bytes: None,
            lag_entries: 1000,
            quota_warn_pct: 80.0,
        }
    }
}

/// What the checks share: the view, the members that answered, and the findings so far.
pub(super) struct Exam<'a> {
    pub(super) view: &'a ClusterView,
    pub(super) limits: Limits,
    pub(super) probes: &'a [PeerProbe],
    pub(super) reachable: Vec<&'a EndpointStatus>,
    pub(super) cluster: Cluster<'a>,
    pub(super) findings: Vec<Finding>,
}

impl<'a> Exam<'a> {
    /// The quota member `s` is judged against, and where it comes from.
    pub(super) fn quota_of(&self, s: &EndpointStatus) -> (u64, &'static str) {
        match (self.limits.quota_bytes, s.quota_bytes) {
            (Some(q), _) => (q, "flag"),
            (None, Some(q)) => (q, "metrics"),
            (None, None) => (DEFAULT_QUOTA, "default"),
        }
    }

    pub(super) fn push(
        &mut self,
        level: Level,
        check: &'static str,
        message: String,
        remedy: String,
    ) {
        debug_assert!(
            CHECKS.contains(&check),
            "{check} has no section in the docs"
        );
        self.findings.push(Finding {
            level,
            check,
            message,
            remedy,
            doc: doc_link(check),
        });
    }

    /// `8e9e05c52164694d (m0)`, or the bare id when the member list does not name it.
    pub(super) fn name(&self, id: u64) -> String {
        let n = self.view.name_of(id);
        if n.is_empty() {
            MemberId(id).to_string()
        } else {
            format!("{} ({n})", MemberId(id))
        }
    }

    pub(super) fn leader_status(&self) -> Option<&'a EndpointStatus> {
        self.view.leader.and_then(|l| self.view.status_of(l))
    }

    pub(super) fn distinct<T: Ord + Clone>(&self, f: impl Fn(&EndpointStatus) -> T) -> Vec<T> {
        let mut v: Vec<T> = self.reachable.iter().map(|s| f(s)).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Judge a surveyed cluster.
pub fn diagnose(view: &ClusterView, limits: Limits) -> Report {
    diagnose_with(view, limits, &[])
}

/// [`diagnose`], with the results of probing unreachable members' peer URLs.
pub fn diagnose_with(view: &ClusterView, limits: Limits, probes: &[PeerProbe]) -> Report {
    let mut x = Exam {
        view,
        limits,
        probes,
        reachable: view
            .endpoints
            .iter()
            .filter(|s| s.reachable && view.is_ours(s))
            .collect(),
        cluster: Cluster::new(view),
        findings: Vec::new(),
    };
    check_stray_endpoints(&mut x);
    check_foreign(&mut x);
    check_members(&mut x);
    check_quorum(&mut x);
    check_leader_and_terms(&mut x);
    check_agreement(&mut x);
    let mut rows: Vec<MemberRow> = x
        .reachable
        .clone()
        .into_iter()
        .map(|s| check_member_status(&mut x, s))
        .collect();
    check_size_drift(&mut x);
    check_versions(&mut x);
    let alarms = check_alarms(&mut x);
    rows.extend(foreign_rows(&x));
    rows.extend(unreachable_rows(&x));
    let (quota_bytes, quota_source) = x
        .leader_status()
        .or(x.reachable.first().copied())
        .map(|s| x.quota_of(s))
        .unwrap_or((limits.quota_bytes.unwrap_or(DEFAULT_QUOTA), "default"));
    let mut findings = x.findings;
    findings.sort_by_key(|f| f.level);
    Report {
        healthy: !findings.iter().any(|f| f.level == Level::Error),
        cluster_id: view.cluster_id.map(ClusterId),
        leader: view.leader.map(MemberId),
        last_known_leader: view.last_known_leader.map(|l| LastLeaderRow {
            id: MemberId(l.id),
            name: view.name_of(l.id),
            raft_term: l.raft_term,
        }),
        quorum: view.quorum(),
        quota_bytes,
        quota_source,
        members: rows,
        alarms,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EtcdErrorKind;
    use crate::source::etcd::{AlarmInfo, MemberInfo};

    fn st(id: u64, leader: u64, term: u64, index: u64, db: i64, version: &str) -> EndpointStatus {
        EndpointStatus {
            endpoint: format!("http://10.0.0.{id}:2379"),
            reachable: true,
            error: None,
            error_kind: None,
            member_id: id,
            cluster_id: 99,
            leader,
            raft_term: term,
            raft_index: index,
            raft_applied_index: index,
            revision: 5,
            db_size: db,
            db_size_in_use: db,
            version: version.into(),
            storage_version: String::new(),
            is_learner: false,
            errors: vec![],
            member_list: vec![1, 2, 3],
            quota_bytes: None,
        }
    }

    fn member(id: u64) -> MemberInfo {
        MemberInfo {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
            client_urls: vec![format!("http://10.0.0.{id}:2379")],
            is_learner: false,
        }
    }

    fn view(endpoints: Vec<EndpointStatus>) -> ClusterView {
        ClusterView {
            endpoints,
            members: vec![member(1), member(2), member(3)],
            alarms: vec![],
            cluster_id: Some(99),
            leader: Some(1),
            last_known_leader: None,
        }
    }

    fn checks(r: &Report) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.check).collect()
    }

    #[test]
    fn healthy() {
        let v = view(vec![
            st(1, 1, 2, 100, 1 << 20, "3.5.1"),
            st(2, 1, 2, 100, 1 << 20, "3.5.1"),
            st(3, 1, 2, 99, 1 << 20, "3.5.1"),
        ]);
        let r = diagnose(&v, Limits::default());
        assert!(r.healthy, "{:?}", r.findings);
        assert!(r.findings.is_empty());
    }

    #[test]
    fn problems_are_found() {
        let mut v = view(vec![
            st(1, 1, 3, 5000, 1900 << 20, "3.5.1"),
            st(2, 1, 2, 100, 1 << 20, "3.4.23"),
        ]);
        v.alarms.push(AlarmInfo {
            member_id: 1,
            alarm: "NOSPACE".into(),
        });
        let r = diagnose(&v, Limits::default());
        assert!(!r.healthy);
        let c = checks(&r);
        for want in [
            "member-unreachable",
            "term-disagreement",
            "member-lagging",
            "version-skew",
            "alarm-nospace",
        ] {
            assert!(c.contains(&want), "{want} missing from {c:?}");
        }
        // The full db is one finding: the alarm's, which names the size and the quota.
        assert!(!c.contains(&"db-near-quota"), "{c:?}");
        let nospace = r
            .findings
            .iter()
            .find(|f| f.check == "alarm-nospace")
            .unwrap();
        assert!(
            nospace.message.contains("1.9 GiB of its 2.0 GiB quota"),
            "{}",
            nospace.message
        );
        assert!(!c.contains(&"quorum-lost"));
        // Errors come first.
        assert_eq!(r.findings[0].level, Level::Error);
    }

    #[test]
    fn quorum_and_disagreement() {
        // Member 1 answers and still names member 2, which was asked and refused, as
        // member 3 did: no leader now, 1 of 3 answer, 2 needed.
        let mut a = st(1, 2, 2, 100, 1, "3.5.1");
        a.member_list = vec![1, 2, 3];
        let down = |id: u64| {
            let mut s = EndpointStatus::unreachable(
                &format!("http://10.0.0.{id}:2379"),
                "status: connection refused".into(),
            );
            s.error_kind = Some(EtcdErrorKind::Refused);
            s
        };
        let mut v = view(vec![a, down(2), down(3)]);
        v.settle_leader();
        assert_eq!(v.leader, None);
        let r = diagnose(&v, Limits::default());
        let c = checks(&r);
        assert!(
            c.contains(&"quorum-lost") && c.contains(&"no-leader"),
            "{c:?}"
        );
        assert!(r.leader.is_none());
        assert_eq!(
            r.last_known_leader.as_ref().map(|l| l.id),
            Some(MemberId(2))
        );
        let q = r
            .findings
            .iter()
            .find(|f| f.check == "quorum-lost")
            .unwrap();
        assert!(
            q.message
                .contains("1 of 3 members answer; 2 needed for quorum"),
            "{}",
            q.message
        );
        // Remedies are commands with this cluster's values, and link their section.
        assert!(q.remedy.contains("m1=http://10.0.0.1:2380"), "{}", q.remedy);
        assert_eq!(q.doc, "docs/cluster-health.md#quorum-lost");
        assert!(r.findings.iter().all(|f| !f.remedy.contains("field notes")));
        let mut b = st(2, 1, 2, 100, 1, "3.5.1");
        b.member_list = vec![1, 2];
        b.cluster_id = 7;
        let v = view(vec![
            st(1, 1, 2, 100, 1, "3.5.1"),
            b,
            st(3, 1, 2, 100, 1, "3.5.1"),
        ]);
        let r = diagnose(&v, Limits::default());
        let c = checks(&r);
        // Member 2's endpoint answers for cluster 7: one finding, which names it, its
        // cluster id and the member expected there; it is not also "unreachable", and its
        // member list is not this cluster's to disagree with.
        assert_eq!(c, vec!["cluster-id-mismatch"], "{:#?}", r.findings);
        let f = &r.findings[0];
        assert!(
            f.message.contains("member 2 of cluster 7") && f.message.contains("2 (m2)"),
            "{}",
            f.message
        );
        assert!(!f.remedy.contains("initial-cluster-state"), "{}", f.remedy);
        assert!(f.remedy.contains("--node m2"), "{}", f.remedy);
        let row = r.members.iter().find(|m| m.id == MemberId(2)).unwrap();
        assert_eq!(row.other_cluster_id, Some(ClusterId(7)));
        assert_eq!(r.quorum.down, 1);
    }

    #[test]
    fn every_check_has_its_section_in_the_docs() {
        let doc = include_str!("../../docs/cluster-health.md");
        for c in CHECKS {
            assert!(
                doc.lines().any(|l| l == format!("## {c}")),
                "docs/cluster-health.md has no section `## {c}`"
            );
        }
    }
}
