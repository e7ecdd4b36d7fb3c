//! The live cluster doctor behind `lifeboat status`: the hand-run checks of field notes §4
//! (member list on every endpoint, endpoint status, health, alarms) and the quota check of
//! §3 turned into findings, each with the remedy the field notes give. Pure: it judges a
//! [`ClusterView`] that `source::etcd::survey` gathered.

use serde::Serialize;

use crate::source::etcd::{ClusterView, EndpointStatus};

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
    pub check: &'static str,
    pub message: String,
    pub remedy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub id: String,
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
    pub version: String,
    pub revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub cluster_id: Option<String>,
    pub leader: Option<String>,
    pub quota_bytes: u64,
    pub members: Vec<MemberRow>,
    pub alarms: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Thresholds of the checks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub quota_bytes: u64,
    /// Raft entries behind the leader before a member is called lagging.
    pub lag_entries: u64,
    /// Percentage of the quota before the db size is a warning.
    pub quota_warn_pct: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            quota_bytes: DEFAULT_QUOTA,
            lag_entries: 1000,
            quota_warn_pct: 80.0,
        }
    }
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// `https://host:port/` → `host:port`, to compare endpoints given in different forms.
pub fn strip_scheme(u: &str) -> &str {
    let u = u.trim();
    let u = u.split_once("://").map_or(u, |(_, r)| r);
    u.trim_end_matches('/')
}

fn gib(n: u64) -> String {
    crate::cli::output::human_bytes(n)
}

/// A TCP probe of an unreachable member's peer URL (port 2380 usually).
#[derive(Debug, Clone, Serialize)]
pub struct PeerProbe {
    pub member_id: u64,
    pub url: String,
    /// `None`: the port accepts connections.
    pub error: Option<String>,
}

fn peer_words(p: &PeerProbe) -> String {
    match &p.error {
        None => format!(
            "its peer URL {} accepts connections, so etcd runs there but its client URL does not answer (check --listen-client-urls/--advertise-client-urls and port 2379 in the firewall)",
            p.url
        ),
        Some(e) if e.contains("refused") => format!(
            "its peer URL {} refuses connections too: etcd is not running there",
            p.url
        ),
        Some(e) => format!(
            "its peer URL {} does not answer either ({e}): host down, or a firewall",
            p.url
        ),
    }
}

/// Judge a surveyed cluster.
pub fn diagnose(view: &ClusterView, limits: Limits) -> Report {
    diagnose_with(view, limits, &[])
}

/// [`diagnose`], with the results of probing unreachable members' peer URLs.
pub fn diagnose_with(view: &ClusterView, limits: Limits, probes: &[PeerProbe]) -> Report {
    let mut f: Vec<Finding> = Vec::new();
    let mut push = |level, check, message: String, remedy: &str| {
        f.push(Finding {
            level,
            check,
            message,
            remedy: remedy.to_string(),
        })
    };
    let reachable: Vec<&EndpointStatus> = view.endpoints.iter().filter(|s| s.reachable).collect();
    let leader_status = view.leader.and_then(|l| view.status_of(l));
    let name = |id: u64| {
        let n = view.name_of(id);
        if n.is_empty() {
            hex(id)
        } else {
            format!("{} ({n})", hex(id))
        }
    };

    // Unreachable endpoints given on the command line that are no member's client URL (those
    // are reported per member below).
    let is_member_url = |ep: &str| {
        view.members.iter().any(|m| {
            m.client_urls
                .iter()
                .any(|u| strip_scheme(u) == strip_scheme(ep))
        })
    };
    for s in view
        .endpoints
        .iter()
        .filter(|s| !s.reachable && !is_member_url(&s.endpoint))
    {
        push(
            Level::Error,
            "endpoint-unreachable",
            format!(
                "endpoint {} does not answer: {}",
                s.endpoint,
                s.error.clone().unwrap_or_default()
            ),
            "Check that etcd runs there (systemctl status etcd / the static pod) and that port 2379 is reachable; `connection refused` means no process, a dial `i/o timeout` usually a firewall.",
        );
    }

    // Members of the member list that no endpoint speaks for.
    let voters: Vec<_> = view.members.iter().filter(|m| !m.is_learner).collect();
    let mut voters_up = 0usize;
    for m in &view.members {
        let up = reachable.iter().any(|s| s.member_id == m.id);
        if up && !m.is_learner {
            voters_up += 1;
        }
        if !up {
            if m.name.is_empty() && m.client_urls.is_empty() {
                push(
                    Level::Error,
                    "member-unstarted",
                    format!("member {} was added but has never started", hex(m.id)),
                    "Start etcd on the new member with ETCD_INITIAL_CLUSTER_STATE=existing and the ETCD_INITIAL_CLUSTER printed by `member add`; or `etcdctl member remove` it.",
                );
            } else {
                let peer = probes
                    .iter()
                    .find(|p| p.member_id == m.id)
                    .map(|p| format!("; {}", peer_words(p)))
                    .unwrap_or_default();
                push(
                    Level::Error,
                    "member-unreachable",
                    format!(
                        "member {} ({}) is unreachable (client URLs: {}){peer}",
                        hex(m.id),
                        m.name,
                        if m.client_urls.is_empty() {
                            "none".to_string()
                        } else {
                            m.client_urls.join(", ")
                        }
                    ),
                    "Check the process and its log on that host. `connection refused` on 2380 in the others' logs: the peer is not running. If it cannot start (`wal: crc mismatch`), run `lifeboat check-member` on its data dir; a corrupt member is replaced with member remove / member add (field notes §1).",
                );
            }
        }
    }
    let n = voters.len();
    if n > 0 && voters_up < n / 2 + 1 {
        push(
            Level::Error,
            "quorum-lost",
            format!("only {voters_up} of {n} voting members answer; a cluster of {n} needs {}", n / 2 + 1),
            "Bring members back if their data is intact. Otherwise restore the whole cluster from one snapshot (field notes §2): `lifeboat restore plan`; rank surviving data dirs with `lifeboat check-member DIR...` if no backup is recent enough.",
        );
    }

    // Leader and terms.
    let leaders: Vec<u64> = {
        let mut v: Vec<u64> = reachable.iter().map(|s| s.leader).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if view.leader.is_none() || leaders.contains(&0) {
        push(
            Level::Error,
            "no-leader",
            "a member reports no leader".into(),
            "Quorum is lost or an election is under way (`starting a new election at term x` in the logs). Restore quorum; frequent elections come from slow disks (`slow fdatasync`) or networks.",
        );
    } else if leaders.len() > 1 {
        push(
            Level::Warning,
            "leader-disagreement",
            format!(
                "members name different leaders: {}",
                leaders.iter().map(|&l| hex(l)).collect::<Vec<_>>().join(", ")
            ),
            "An election is probably in progress; run again. If it persists, look for a partitioned member.",
        );
    }
    let terms: Vec<u64> = {
        let mut v: Vec<u64> = reachable.iter().map(|s| s.raft_term).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if terms.len() > 1 {
        push(
            Level::Warning,
            "term-disagreement",
            format!("members are in different raft terms: {terms:?}"),
            "All members should show the same RAFT TERM. A member behind is partitioned or restarting; frequent term changes mean leader elections (slow disks or network).",
        );
    }

    // Agreement on membership and cluster id.
    let lists: Vec<Vec<u64>> = {
        let mut v: Vec<Vec<u64>> = reachable
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
        push(
            Level::Error,
            "member-list-disagreement",
            format!(
                "endpoints disagree on the member list: {}",
                lists
                    .iter()
                    .map(|l| format!("[{}]", l.iter().map(|&i| hex(i)).collect::<Vec<_>>().join(",")))
                    .collect::<Vec<_>>()
                    .join(" vs ")
            ),
            "A member with stale state (`failed to find member`, `request cluster ID mismatch`): remove it, delete its data dir, and add it again (field notes §1).",
        );
    }
    let cids: Vec<u64> = {
        let mut v: Vec<u64> = reachable.iter().map(|s| s.cluster_id).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if cids.len() > 1 {
        push(
            Level::Error,
            "cluster-id-mismatch",
            format!(
                "endpoints belong to different clusters: {}",
                cids.iter().map(|&c| hex(c)).collect::<Vec<_>>().join(", ")
            ),
            "One endpoint runs a cluster of its own (e.g. a member restored alone with `snapshot restore`). Remove that member from the real cluster, wipe its data dir and re-add it (field notes §1).",
        );
    }

    // Lag, quota, versions, learners, member errors.
    let mut rows = Vec::new();
    for s in &reachable {
        let lag = leader_status.map(|l| l.raft_index.saturating_sub(s.raft_index));
        if let Some(lag) = lag {
            if lag > limits.lag_entries {
                push(
                    Level::Warning,
                    "member-lagging",
                    format!("member {} is {lag} raft entries behind the leader", name(s.member_id)),
                    "A lagging member has a slow disk or network, or is catching up after a restart. If it never catches up, replace it (field notes §1).",
                );
            }
        }
        let db = s.db_size.max(0) as u64;
        let in_use = s.db_size_in_use.max(0) as u64;
        let pct = if limits.quota_bytes > 0 {
            db as f64 * 100.0 / limits.quota_bytes as f64
        } else {
            0.0
        };
        if pct >= limits.quota_warn_pct {
            push(
                if pct >= 100.0 { Level::Error } else { Level::Warning },
                "db-near-quota",
                format!(
                    "member {}: db {} is {pct:.0}% of the {} quota",
                    name(s.member_id),
                    gib(db),
                    gib(limits.quota_bytes)
                ),
                "Compact to the current revision, defragment every member one at a time, then `etcdctl alarm disarm` if NOSPACE was raised. Long term: raise --quota-backend-bytes (8 GiB is the suggested maximum) and enable --auto-compaction-retention.",
            );
        }
        if db > 64 * 1024 * 1024 && in_use * 2 < db {
            push(
                Level::Info,
                "db-fragmented",
                format!(
                    "member {}: only {} of its {} db is in use; a defrag would reclaim {}",
                    name(s.member_id),
                    gib(in_use),
                    gib(db),
                    gib(db - in_use)
                ),
                "`etcdctl defrag --endpoints=<that member>` (one member at a time; it blocks the member while it runs).",
            );
        }
        for e in &s.errors {
            push(
                Level::Warning,
                "member-error",
                format!("member {} reports: {e}", name(s.member_id)),
                "See the member's log.",
            );
        }
        if s.is_learner {
            let caught_up = lag.is_some_and(|l| l <= limits.lag_entries);
            push(
                Level::Info,
                "learner",
                format!(
                    "member {} is a learner{}",
                    name(s.member_id),
                    if caught_up { " and has caught up" } else { "" }
                ),
                if caught_up {
                    "Promote it: `etcdctl member promote <id>`."
                } else {
                    "Wait until it has caught up, then `etcdctl member promote <id>`."
                },
            );
        }
        rows.push(MemberRow {
            id: hex(s.member_id),
            name: view.name_of(s.member_id),
            endpoint: Some(s.endpoint.clone()),
            reachable: true,
            is_leader: view.leader == Some(s.member_id),
            is_learner: s.is_learner,
            raft_term: s.raft_term,
            raft_index: s.raft_index,
            raft_applied_index: s.raft_applied_index,
            lag,
            db_size: db,
            db_size_in_use: in_use,
            quota_used_pct: (pct * 10.0).round() / 10.0,
            version: s.version.clone(),
            revision: s.revision,
            error: None,
        });
    }
    // Size drift: a follower much bigger than the leader (field notes §3).
    if let Some(l) = leader_status {
        let ldb = l.db_size.max(0) as u64;
        for s in reachable.iter().filter(|s| s.member_id != l.member_id) {
            let db = s.db_size.max(0) as u64;
            if ldb > 0 && db > ldb.saturating_mul(2) && db > 64 * 1024 * 1024 {
                push(
                    Level::Warning,
                    "db-size-drift",
                    format!(
                        "member {}: db {} is more than twice the leader's {}",
                        name(s.member_id),
                        gib(db),
                        gib(ldb)
                    ),
                    "Defragment it; if it keeps drifting, remove and re-add it with --initial-cluster-state existing (field notes §3).",
                );
            }
        }
    }
    let versions: Vec<String> = {
        let mut v: Vec<String> = reachable.iter().map(|s| s.version.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    if versions.len() > 1 {
        push(
            Level::Warning,
            "version-skew",
            format!("members run different etcd versions: {}", versions.join(", ")),
            "Mixed versions are only safe during a rolling upgrade: finish it (one member at a time, minor versions in order).",
        );
    }
    let alarms: Vec<String> = view
        .alarms
        .iter()
        .map(|a| format!("{} on {}", a.alarm, name(a.member_id)))
        .collect();
    for a in &view.alarms {
        match a.alarm.as_str() {
            "NOSPACE" => push(
                Level::Error,
                "alarm-nospace",
                format!("alarm NOSPACE raised by member {}: writes fail with `mvcc: database space exceeded`", name(a.member_id)),
                "Compact to the current revision (`etcdctl compact <rev>`), `etcdctl defrag` every member, then `etcdctl alarm disarm`. Then raise --quota-backend-bytes (8 GiB suggested maximum) and set auto-compaction.",
            ),
            "CORRUPT" => push(
                Level::Error,
                "alarm-corrupt",
                format!("alarm CORRUPT raised by member {}: its data differs from the others", name(a.member_id)),
                "Replace that member: member remove, wipe its data dir, member add (field notes §1).",
            ),
            other => push(
                Level::Warning,
                "alarm",
                format!("alarm {other} raised by member {}", name(a.member_id)),
                "`etcdctl alarm list`; disarm once the cause is fixed.",
            ),
        }
    }
    // Members listed but unreachable get a row too.
    for m in &view.members {
        if !reachable.iter().any(|s| s.member_id == m.id) {
            rows.push(MemberRow {
                id: hex(m.id),
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
                version: String::new(),
                revision: 0,
                error: view
                    .endpoints
                    .iter()
                    .find(|s| {
                        !s.reachable
                            && m.client_urls
                                .iter()
                                .any(|u| strip_scheme(u) == strip_scheme(&s.endpoint))
                    })
                    .and_then(|s| s.error.clone()),
            });
        }
    }
    f.sort_by_key(|x| x.level);
    Report {
        healthy: !f.iter().any(|x| x.level == Level::Error),
        cluster_id: view.cluster_id.map(hex),
        leader: view.leader.map(hex),
        quota_bytes: limits.quota_bytes,
        members: rows,
        alarms,
        findings: f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::etcd::{AlarmInfo, MemberInfo};

    fn st(id: u64, leader: u64, term: u64, index: u64, db: i64, version: &str) -> EndpointStatus {
        EndpointStatus {
            endpoint: format!("http://10.0.0.{id}:2379"),
            reachable: true,
            error: None,
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
            is_learner: false,
            errors: vec![],
            member_list: vec![1, 2, 3],
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
            "db-near-quota",
            "version-skew",
            "alarm-nospace",
        ] {
            assert!(c.contains(&want), "{want} missing from {c:?}");
        }
        assert!(!c.contains(&"quorum-lost"));
        // Errors come first.
        assert_eq!(r.findings[0].level, Level::Error);
    }

    #[test]
    fn quorum_and_disagreement() {
        let mut a = st(1, 0, 2, 100, 1, "3.5.1");
        a.member_list = vec![1, 2, 3];
        let mut v = view(vec![a]);
        v.leader = None;
        let r = diagnose(&v, Limits::default());
        let c = checks(&r);
        assert!(
            c.contains(&"quorum-lost") && c.contains(&"no-leader"),
            "{c:?}"
        );
        let mut b = st(2, 1, 2, 100, 1, "3.5.1");
        b.member_list = vec![1, 2];
        b.cluster_id = 7;
        let v = view(vec![
            st(1, 1, 2, 100, 1, "3.5.1"),
            b,
            st(3, 1, 2, 100, 1, "3.5.1"),
        ]);
        let c = checks(&diagnose(&v, Limits::default()));
        assert!(
            c.contains(&"member-list-disagreement") && c.contains(&"cluster-id-mismatch"),
            "{c:?}"
        );
    }
}
