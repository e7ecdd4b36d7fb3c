//! The live cluster doctor behind `lifeboat status`: the checks operators run by hand
//! (member list on every endpoint, endpoint status, health, alarms, the db size against its
//! quota) turned into findings. Each finding has a stable check name, the commands to run
//! with this cluster's values, and a section of docs/cluster-health.md of the same name.
//! Pure: it judges a [`ClusterView`] that [`super::gather`] collected.

use serde::Serialize;

use super::remedy::{doc_link, Cluster};
use super::PeerProbe;
use crate::error::EtcdErrorKind;
use crate::source::etcd::{strip_scheme, ClusterView, EndpointStatus, MemberInfo, Quorum};
use crate::units::human_bytes;

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
    /// The leader now (hex id); `None` when no leader answers or quorum is lost.
    pub leader: Option<String>,
    /// When there is no leader: the one the surviving members last followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_known_leader: Option<LastLeaderRow>,
    /// Voting members that answer, and how many a quorum needs.
    pub quorum: Quorum,
    pub quota_bytes: u64,
    pub members: Vec<MemberRow>,
    pub alarms: Vec<String>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastLeaderRow {
    pub id: String,
    pub name: String,
    pub raft_term: u64,
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

/// What the checks share: the view, the members that answered, and the findings so far.
struct Exam<'a> {
    view: &'a ClusterView,
    limits: Limits,
    probes: &'a [PeerProbe],
    reachable: Vec<&'a EndpointStatus>,
    cluster: Cluster<'a>,
    findings: Vec<Finding>,
}

impl<'a> Exam<'a> {
    fn push(&mut self, level: Level, check: &'static str, message: String, remedy: String) {
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
    fn name(&self, id: u64) -> String {
        let n = self.view.name_of(id);
        if n.is_empty() {
            hex(id)
        } else {
            format!("{} ({n})", hex(id))
        }
    }

    fn leader_status(&self) -> Option<&'a EndpointStatus> {
        self.view.leader.and_then(|l| self.view.status_of(l))
    }

    fn distinct<T: Ord + Clone>(&self, f: impl Fn(&EndpointStatus) -> T) -> Vec<T> {
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
        reachable: view.endpoints.iter().filter(|s| s.reachable).collect(),
        cluster: Cluster::new(view),
        findings: Vec::new(),
    };
    check_stray_endpoints(&mut x);
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
    rows.extend(unreachable_rows(&x));
    let mut findings = x.findings;
    findings.sort_by_key(|f| f.level);
    Report {
        healthy: !findings.iter().any(|f| f.level == Level::Error),
        cluster_id: view.cluster_id.map(hex),
        leader: view.leader.map(hex),
        last_known_leader: view.last_known_leader.map(|l| LastLeaderRow {
            id: hex(l.id),
            name: view.name_of(l.id),
            raft_term: l.raft_term,
        }),
        quorum: view.quorum(),
        quota_bytes: limits.quota_bytes,
        members: rows,
        alarms,
        findings,
    }
}

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
fn check_stray_endpoints(x: &mut Exam<'_>) {
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
fn check_members(x: &mut Exam<'_>) {
    let view = x.view;
    for m in &view.members {
        if view.status_of(m.id).is_some() {
            continue;
        }
        if m.name.is_empty() && m.client_urls.is_empty() {
            let initial = x.cluster.initial_cluster();
            x.push(
                Level::Error,
                "member-unstarted",
                format!("member {} was added but has never started", hex(m.id)),
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

fn check_quorum(x: &mut Exam<'_>) {
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

fn check_leader_and_terms(x: &mut Exam<'_>) {
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
fn check_agreement(x: &mut Exam<'_>) {
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
                    l.iter().map(|&i| hex(i)).collect::<Vec<_>>().join(",")
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
    let cids = x.distinct(|s| s.cluster_id);
    if cids.len() > 1 {
        let odd: Vec<String> = x
            .reachable
            .iter()
            .filter(|s| Some(s.cluster_id) != x.view.cluster_id)
            .map(|s| format!("{} (cluster {})", s.endpoint, hex(s.cluster_id)))
            .collect();
        x.push(
            Level::Error,
            "cluster-id-mismatch",
            format!(
                "endpoints belong to different clusters: {} (expected {})",
                odd.join(", "),
                x.view.cluster_id.map(hex).unwrap_or_default()
            ),
            "That endpoint runs a cluster of its own (e.g. a member restored alone with `snapshot restore`): stop it, move its data dir aside, and re-add it to the real cluster with `etcdctl member add NAME --peer-urls=PEER_URL` and --initial-cluster-state=existing.".to_string(),
        );
    }
}

/// Lag, quota, fragmentation, the member's own errors, learners; and its table row.
fn check_member_status(x: &mut Exam<'_>, s: &EndpointStatus) -> MemberRow {
    let leader = x.leader_status();
    let lag = leader.map(|l| l.raft_index.saturating_sub(s.raft_index));
    let who = x.name(s.member_id);
    let one = format!("etcdctl --endpoints={}", s.endpoint);
    if let Some(lag) = lag.filter(|&l| l > x.limits.lag_entries) {
        let remedy = format!(
            "Run `{}` again: a member catching up after a restart closes the gap. If it never does, its disk or network is slow (`slow fdatasync` in its log); replace it as for member-unreachable.",
            x.cluster.ctl("endpoint status -w table")
        );
        x.push(
            Level::Warning,
            "member-lagging",
            format!("member {who} is {lag} raft entries behind the leader"),
            remedy,
        );
    }
    let db = s.db_size.max(0) as u64;
    let in_use = s.db_size_in_use.max(0) as u64;
    let quota = x.limits.quota_bytes;
    let pct = if quota > 0 {
        db as f64 * 100.0 / quota as f64
    } else {
        0.0
    };
    if pct >= x.limits.quota_warn_pct {
        let remedy = format!(
            "`rev=$({} endpoint status -w json | grep -o '\"revision\":[0-9]*' | cut -d: -f2)`; `{}`; then `etcdctl --endpoints=<each member, one at a time> defrag`; then `{}`. Long term: raise --quota-backend-bytes (8 GiB is the suggested maximum) and set --auto-compaction-retention.",
            one,
            x.cluster.ctl("compact $rev"),
            x.cluster.ctl("alarm disarm")
        );
        x.push(
            if pct >= 100.0 {
                Level::Error
            } else {
                Level::Warning
            },
            "db-near-quota",
            format!(
                "member {who}: db {} is {pct:.0}% of the {} quota",
                human_bytes(db),
                human_bytes(quota)
            ),
            remedy,
        );
    }
    if db > 64 * 1024 * 1024 && in_use * 2 < db {
        x.push(
            Level::Info,
            "db-fragmented",
            format!(
                "member {who}: only {} of its {} db is in use; a defrag would reclaim {}",
                human_bytes(in_use),
                human_bytes(db),
                human_bytes(db - in_use)
            ),
            format!("`{one} defrag` (it blocks that member while it runs: one member at a time)."),
        );
    }
    for e in &s.errors {
        x.push(
            Level::Warning,
            "member-error",
            format!("member {who} reports: {e}"),
            format!("`{one} endpoint status -w json` shows it too; the member's log says why."),
        );
    }
    if s.is_learner {
        let caught_up = lag.is_some_and(|l| l <= x.limits.lag_entries);
        let promote = x.cluster.ctl(&format!("member promote {:x}", s.member_id));
        x.push(
            Level::Info,
            "learner",
            format!(
                "member {who} is a learner{}",
                if caught_up { " and has caught up" } else { "" }
            ),
            if caught_up {
                format!("Promote it: `{promote}`.")
            } else {
                format!("Wait until it has caught up, then `{promote}`.")
            },
        );
    }
    MemberRow {
        id: hex(s.member_id),
        name: x.view.name_of(s.member_id),
        endpoint: Some(s.endpoint.clone()),
        reachable: true,
        is_leader: x.view.leader == Some(s.member_id),
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
    }
}

/// A follower much bigger than the leader drifts (it was seen after raising the quota).
fn check_size_drift(x: &mut Exam<'_>) {
    let Some(l) = x.leader_status() else { return };
    let ldb = l.db_size.max(0) as u64;
    let drifting: Vec<&EndpointStatus> = x
        .reachable
        .iter()
        .copied()
        .filter(|s| s.member_id != l.member_id)
        .filter(|s| {
            let db = s.db_size.max(0) as u64;
            ldb > 0 && db > ldb.saturating_mul(2) && db > 64 * 1024 * 1024
        })
        .collect();
    for s in drifting {
        let remedy = format!(
            "`etcdctl --endpoints={} defrag`; if it keeps drifting, replace it: {}.",
            s.endpoint,
            x.view
                .member(s.member_id)
                .map(|m| x.cluster.replace_member(m))
                .unwrap_or_default()
        );
        x.push(
            Level::Warning,
            "db-size-drift",
            format!(
                "member {}: db {} is more than twice the leader's {}",
                x.name(s.member_id),
                human_bytes(s.db_size.max(0) as u64),
                human_bytes(ldb)
            ),
            remedy,
        );
    }
}

fn check_versions(x: &mut Exam<'_>) {
    let versions = x.distinct(|s| s.version.clone());
    if versions.len() > 1 {
        x.push(
            Level::Warning,
            "version-skew",
            format!("members run different etcd versions: {}", versions.join(", ")),
            "Mixed versions are only safe during a rolling upgrade: finish it, one member at a time, minor versions in order.".to_string(),
        );
    }
}

/// Findings for the raised alarms; returns them as `NOSPACE on <member>` for the report.
fn check_alarms(x: &mut Exam<'_>) -> Vec<String> {
    let view = x.view;
    let mut shown = Vec::new();
    for a in &view.alarms {
        let who = x.name(a.member_id);
        shown.push(format!("{} on {who}", a.alarm));
        match a.alarm.as_str() {
            "NOSPACE" => {
                let remedy = format!(
                    "Free space, then disarm: `rev=$({} endpoint status -w json | grep -o '\"revision\":[0-9]*' | head -1 | cut -d: -f2)`; `{}`; `etcdctl --endpoints=<each member, one at a time> defrag`; `{}`. Then raise --quota-backend-bytes (8 GiB is the suggested maximum) and set --auto-compaction-retention.",
                    x.cluster.ctl(""),
                    x.cluster.ctl("compact $rev"),
                    x.cluster.ctl("alarm disarm")
                );
                x.push(
                    Level::Error,
                    "alarm-nospace",
                    format!("alarm NOSPACE raised by member {who}: writes fail with `mvcc: database space exceeded`"),
                    remedy,
                );
            }
            "CORRUPT" => {
                let remedy = match view.member(a.member_id) {
                    Some(m) => format!("Replace that member: {}.", x.cluster.replace_member(m)),
                    None => {
                        "Replace that member (member remove, wipe its data dir, member add).".into()
                    }
                };
                x.push(
                    Level::Error,
                    "alarm-corrupt",
                    format!(
                        "alarm CORRUPT raised by member {who}: its data differs from the others"
                    ),
                    remedy,
                );
            }
            other => {
                let remedy = format!(
                    "`{}`; disarm once the cause is fixed: `{}`.",
                    x.cluster.ctl("alarm list"),
                    x.cluster.ctl("alarm disarm")
                );
                x.push(
                    Level::Warning,
                    "alarm",
                    format!("alarm {other} raised by member {who}"),
                    remedy,
                );
            }
        }
    }
    shown
}

/// Members listed but not answering get a row too, with why.
fn unreachable_rows(x: &Exam<'_>) -> Vec<MemberRow> {
    x.view
        .members
        .iter()
        .filter(|m| x.view.status_of(m.id).is_none())
        .map(|m| MemberRow {
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
            error: x.view.failed_to_answer(m.id).and_then(|s| s.error.clone()),
        })
        .collect()
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
            r.last_known_leader.as_ref().map(|l| l.id.as_str()),
            Some("2")
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
        let c = checks(&diagnose(&v, Limits::default()));
        assert!(
            c.contains(&"member-list-disagreement") && c.contains(&"cluster-id-mismatch"),
            "{c:?}"
        );
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
