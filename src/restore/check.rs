//! `restore check`: the running restored cluster compared with its plan, the proof that
//! the restore worked.
//!
//! Every member of the plan is asked through its client URL for its status (member id,
//! cluster id, leader, revision), its `hashkv` at its current revision, and its key count
//! (a count-only, serializable range over the whole keyspace, so each member counts its
//! own copy). The verdict has two kinds of problems:
//!
//! * the cluster is not the one the plan made, or not healthy (exit 4): a member does not
//!   answer, a member or cluster id is not the plan's (a member started from another plan
//!   or from an old data dir), not exactly one leader, a member list that is not the plan's;
//! * the data differ (exit 3): a revision, hashkv or key count that is not what the plan
//!   predicted from the backup (see [`super::predict`]), or members that disagree.
//!
//! Credentials are needed for hashkv and the range on a cluster with auth: a refusal is a
//! usage error naming `--user` (exit 2), not a verdict.

use serde::Serialize;

use super::plan::{Plan, PlanMember};
use crate::error::EtcdErrorKind;
use crate::format::etcd::{ClusterId, MemberId};
use crate::source::etcd::{
    errors::classify, strip_scheme, survey, ClusterView, ConnectConfig, EndpointStatus,
};
use crate::{Error, Result};

/// One member of the plan, as it answered.
#[derive(Debug, Clone, Serialize)]
pub struct MemberCheck {
    pub name: String,
    /// The id it answered with (hex), or the plan's when it did not answer.
    pub member_id: MemberId,
    /// The plan's id for this member (hex).
    pub member_id_expected: MemberId,
    /// The cluster id it answered with (hex); None when it did not answer.
    pub cluster_id: Option<ClusterId>,
    pub endpoint: String,
    pub ok: bool,
    pub problems: Vec<String>,
    pub is_leader: bool,
    pub revision: Option<i64>,
    pub hashkv: Option<u32>,
    pub keys: Option<u64>,
}

/// The verdict of `restore check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    /// `ok`, `data differ` (exit 3) or `unhealthy` (exit 4).
    pub verdict: &'static str,
    pub backup_id: String,
    /// The plan's cluster id (hex).
    pub cluster_id: ClusterId,
    pub members: Vec<MemberCheck>,
    /// The leader's name, when there is exactly one.
    pub leader: Option<String>,
    /// The revision the members answered (the first answering member's).
    pub revision: Option<i64>,
    pub revision_expected: Option<i64>,
    pub hashkv: Option<u32>,
    pub hashkv_expected: Option<u32>,
    /// The plan's `expected_hashkv_while_compacting`: accepted too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_while_compacting: Option<u32>,
    pub keys: Option<u64>,
    pub keys_expected: Option<u64>,
    /// Problems of the cluster as a whole (the members' own are in `members`).
    pub problems: Vec<String>,
    /// Whether the problems include one that makes the cluster unhealthy (exit 4).
    #[serde(skip)]
    pub unhealthy: bool,
}

/// What one member said besides its status.
#[derive(Debug, Clone, Default)]
struct Data {
    hashkv: Option<u32>,
    hashkv_revision: Option<i64>,
    keys: Option<u64>,
    error: Option<String>,
}

/// The endpoint to ask for `m`: its first client URL.
fn endpoint_of(m: &PlanMember) -> String {
    m.client_urls.first().cloned().unwrap_or_default()
}

/// Ask `endpoint` for hashkv (current revision) and its key count. Authentication and
/// permission refusals are usage errors (exit 2).
async fn data_of(cfg: &ConnectConfig, endpoint: &str) -> Result<Data> {
    let mut client = match cfg.connect_one(endpoint, false).await {
        Ok(c) => c,
        Err(e) => {
            return Ok(Data {
                error: Some(e.to_string()),
                ..Data::default()
            })
        }
    };
    let refused = |what: &str, e: &etcd_client::Error| -> std::result::Result<String, Error> {
        match classify(cfg, endpoint, what, e) {
            Error::Etcd {
                kind: EtcdErrorKind::Auth | EtcdErrorKind::Permission,
                message,
                ..
            } => Err(Error::flag(
                "--user",
                format!("{endpoint}: {message} (restore check needs a user that may read every key and ask hashkv: root)"),
            )),
            other => Ok(other.to_string()),
        }
    };
    let mut d = Data::default();
    match client.hash_kv(0).await {
        Ok(h) => {
            d.hashkv = Some(h.hash());
            d.hashkv_revision = h.header().map(|h| h.revision());
        }
        Err(e) => d.error = Some(refused("hashkv", &e)?),
    }
    let opts = etcd_client::GetOptions::new()
        .with_all_keys()
        .with_count_only()
        .with_serializable();
    match client.get("", Some(opts)).await {
        Ok(g) => d.keys = Some(g.count().max(0) as u64),
        Err(e) => {
            if d.error.is_none() {
                d.error = Some(refused("count keys", &e)?);
            }
        }
    }
    Ok(d)
}

/// Check the running cluster against `plan`, asking each member at its first client URL
/// with `cfg`'s TLS files, user and timeouts (its endpoints are not used).
pub async fn check(plan: &Plan, cfg: &ConnectConfig) -> Result<CheckReport> {
    if plan.expected_hashkv.is_none() {
        return Err(Error::flag(
            "--plan",
            "plan.json holds no expected_hashkv (made by an older lifeboat), so there is nothing to check the data against: compare `etcdctl endpoint hashkv` between the members instead",
        ));
    }
    let mut cfg = cfg.clone();
    cfg.endpoints = plan.members.iter().map(endpoint_of).collect();
    let (view, nobody) = match survey(&cfg).await {
        Ok(v) => (Some(v), None),
        Err(e @ Error::Flag { .. }) | Err(e @ Error::Usage(_)) => return Err(e),
        Err(e) => (None, Some(e.to_string())),
    };
    // A refused login is the flags' fault, not the cluster's.
    if let Some(s) = view.as_ref().and_then(|v| {
        v.endpoints
            .iter()
            .find(|s| s.error_kind == Some(EtcdErrorKind::Auth))
    }) {
        return Err(Error::flag(
            "--user",
            format!("{}: {}", s.endpoint, s.error.clone().unwrap_or_default()),
        ));
    }
    let status_of = |ep: &str| -> Option<&EndpointStatus> {
        view.as_ref()?
            .endpoints
            .iter()
            .find(|s| strip_scheme(&s.endpoint) == strip_scheme(ep))
    };
    // hashkv and key count from every member that answered, concurrently.
    let mut set = tokio::task::JoinSet::new();
    for (i, m) in plan.members.iter().enumerate() {
        let ep = endpoint_of(m);
        if !status_of(&ep).is_some_and(|s| s.reachable) {
            continue;
        }
        let cfg = cfg.clone();
        set.spawn(async move { (i, data_of(&cfg, &ep).await) });
    }
    let mut data: Vec<Data> = vec![Data::default(); plan.members.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, d)) = r {
            data[i] = d?;
        }
    }
    let mut leaders: Vec<u64> = Vec::new();
    let mut members = Vec::new();
    for (m, d) in plan.members.iter().zip(&data) {
        let st = status_of(&endpoint_of(m)).filter(|s| s.reachable);
        if let Some(s) = st.filter(|s| s.leader != 0 && !leaders.contains(&s.leader)) {
            leaders.push(s.leader);
        }
        members.push(member_check(plan, m, st, d, || {
            status_of(&endpoint_of(m))
                .and_then(|s| s.error.clone())
                .or_else(|| nobody.clone())
        }));
    }
    let mut unhealthy = members.iter().any(|m| !m.ok);
    let mut problems = Vec::new();
    let leader = match leader_of(plan, &leaders, &members) {
        Ok(name) => Some(name),
        Err(problem) => {
            problems.extend(problem);
            unhealthy = true;
            None
        }
    };
    if let Some(p) = view.as_ref().and_then(|v| member_list_problem(plan, v)) {
        problems.push(p);
        unhealthy = true;
    }

    let d = judge_data(plan, &members);
    problems.extend(d.problems);
    let data_differ = d.differ;
    let (revision, hashkv, keys) = (d.revision, d.hashkv, d.keys);
    let ok = !unhealthy && !data_differ;
    let verdict = if unhealthy {
        "unhealthy"
    } else if data_differ {
        "data differ"
    } else {
        "ok"
    };
    Ok(CheckReport {
        ok,
        verdict,
        backup_id: plan.backup_id.clone(),
        cluster_id: plan.cluster_id,
        members,
        leader,
        revision,
        revision_expected: plan.expected_revision,
        hashkv,
        hashkv_expected: plan.expected_hashkv,
        hashkv_while_compacting: plan.expected_hashkv_while_compacting,
        keys,
        keys_expected: plan.expected_keys,
        problems,
        unhealthy,
    })
}

/// Member `m` of the plan as it answered: `st` its status when it answered at all, `d`
/// its data, `why` why it did not answer. Any problem makes the cluster unhealthy.
fn member_check(
    plan: &Plan,
    m: &PlanMember,
    st: Option<&EndpointStatus>,
    d: &Data,
    why: impl FnOnce() -> Option<String>,
) -> MemberCheck {
    let ep = endpoint_of(m);
    let mut mc = MemberCheck {
        name: m.name.clone(),
        member_id: m.member_id,
        member_id_expected: m.member_id,
        cluster_id: None,
        endpoint: ep.clone(),
        ok: true,
        problems: Vec::new(),
        is_leader: false,
        revision: None,
        hashkv: d.hashkv,
        keys: d.keys,
    };
    let Some(s) = st else {
        let why = why().unwrap_or_else(|| "no answer".into());
        mc.problems.push(format!(
            "does not answer at {ep}: {why}; start it with the plan's flags (RUNBOOK step 5); a member started from another plan or an old data dir never answers here (it waits for its own cluster's quorum): check its flags and data dir"
        ));
        mc.ok = false;
        return mc;
    };
    let (got_member, got_cluster) = (MemberId(s.member_id), ClusterId(s.cluster_id));
    mc.member_id = got_member;
    mc.cluster_id = Some(got_cluster);
    mc.revision = Some(d.hashkv_revision.unwrap_or(s.revision));
    mc.is_leader = s.leader != 0 && s.leader == s.member_id;
    if got_cluster != plan.cluster_id {
        mc.problems.push(format!(
            "answers as member {} of cluster {}, not of the plan's cluster {}: it was started from another plan or from an old data dir; stop it, move its data dir aside and run `lifeboat restore apply --plan DIR --node {}`",
            got_member,
            got_cluster,
            plan.cluster_id,
            m.name
        ));
    } else if got_member != m.member_id {
        mc.problems.push(format!(
            "answers as member {}, the plan's {} is {}: a member of another restore answers at its client URL; stop it and start {} with the plan's flags",
            got_member,
            m.name,
            m.member_id,
            m.name
        ));
    }
    if s.leader == 0 {
        mc.problems.push(
            "has no leader: fewer than a quorum of the plan's members run, or they cannot reach each other's peer URLs".into(),
        );
    }
    for e in &s.errors {
        mc.problems.push(format!("reports: {e}"));
    }
    if let Some(e) = &d.error {
        mc.problems.push(format!("answers its status but not: {e}"));
    }
    mc.ok = mc.problems.is_empty();
    mc
}

/// Exactly one leader, one of the plan's members: its name. Otherwise the cluster is
/// unhealthy, with the problem to report (none when no member answered at all: the
/// members' own problems say so).
fn leader_of(
    plan: &Plan,
    leaders: &[u64],
    members: &[MemberCheck],
) -> std::result::Result<String, Option<String>> {
    match leaders {
        [l] => plan
            .members
            .iter()
            .find(|m| m.member_id == MemberId(*l))
            .map(|m| m.name.clone())
            .ok_or_else(|| {
                Some(format!(
                    "the leader {} is not a member of the plan",
                    MemberId(*l)
                ))
            }),
        [] => Err(members
            .iter()
            .any(|m| m.cluster_id.is_some())
            .then(|| "no leader".into())),
        many => Err(Some(format!(
            "the members name {} different leaders ({}): the cluster is split; see the members' problems",
            many.len(),
            many.iter().map(|l| MemberId(*l).to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The member list, when the cluster answers as the plan's, is the plan's.
fn member_list_problem(plan: &Plan, v: &ClusterView) -> Option<String> {
    let mut got: Vec<MemberId> = v.members.iter().map(|m| MemberId(m.id)).collect();
    let mut want: Vec<MemberId> = plan.members.iter().map(|m| m.member_id).collect();
    got.sort_by_key(|m| m.to_string());
    want.sort_by_key(|m| m.to_string());
    let list = |ids: &[MemberId]| ids.iter().map(|m| m.to_string()).collect::<Vec<_>>();
    (!got.is_empty() && got != want && v.cluster_id.map(ClusterId) == Some(plan.cluster_id)).then(
        || {
            format!(
                "the member list holds {}, the plan {}",
                list(&got).join(", "),
                list(&want).join(", ")
            )
        },
    )
}

/// The members' data against the plan's prediction: the answering members' revision,
/// hashkv and key count (the first's), and the problems where they differ from each other
/// or from the plan (exit 3).
struct DataVerdict {
    revision: Option<i64>,
    hashkv: Option<u32>,
    keys: Option<u64>,
    problems: Vec<String>,
    differ: bool,
}

fn judge_data(plan: &Plan, members: &[MemberCheck]) -> DataVerdict {
    // The data: revision, hashkv and key count, equal everywhere and to the prediction.
    let mut problems = Vec::new();
    let mut differs = false;
    let answered: Vec<&MemberCheck> = members
        .iter()
        .filter(|m| m.cluster_id == Some(plan.cluster_id))
        .collect();
    let first = answered.first();
    let revision = first.and_then(|m| m.revision);
    let hashkv = first.and_then(|m| m.hashkv);
    let keys = first.and_then(|m| m.keys);
    let differ = |what: &str, f: &dyn Fn(&MemberCheck) -> Option<String>| -> Option<String> {
        let vals: Vec<String> = answered
            .iter()
            .map(|m| format!("{} {}", m.name, f(m).unwrap_or_else(|| "-".into())))
            .collect();
        let distinct: std::collections::BTreeSet<Option<String>> =
            answered.iter().map(|m| f(m)).collect();
        (distinct.len() > 1).then(|| format!("the members differ in {what}: {}", vals.join(", ")))
    };
    // A member still running the compaction it resumed at start answers the plan's other
    // hash (no key is live): the same data as one that has finished.
    let settled = |h: u32| match plan.expected_hashkv {
        Some(want) if Some(h) == plan.expected_hashkv_while_compacting => want,
        _ => h,
    };
    for p in [
        differ("revision", &|m| m.revision.map(|r| r.to_string())),
        differ("hashkv", &|m| m.hashkv.map(|h| settled(h).to_string())),
        differ("key count", &|m| m.keys.map(|k| k.to_string())),
    ]
    .into_iter()
    .flatten()
    {
        problems.push(p);
        differs = true;
    }
    let bumped = plan.expected_revision.is_some_and(|r| r > plan.revision);
    let bump_words = if bumped {
        " (the backup's revision plus the bump)"
    } else {
        " (the backup's revision)"
    };
    if let (Some(got), Some(want)) = (revision, plan.expected_revision) {
        if got != want {
            let why = if got > want {
                format!(
                    "the revision moved on by {} since the restore: something wrote to the cluster before this check (a kube-apiserver or another client started early, or leases expired), so its data are no longer the backup's",
                    got - want
                )
            } else {
                "older than the backup: the members were not restored from this plan's backup"
                    .into()
            };
            problems.push(format!(
                "revision {got}, the plan predicts {want}{bump_words}: {why}"
            ));
            differs = true;
        }
    }
    if let (Some(got), Some(want)) = (hashkv, plan.expected_hashkv) {
        // Either answer etcd gives, before or after the compaction it resumes at start.
        if settled(got) != want && revision == plan.expected_revision {
            problems.push(format!(
                "hashkv {got} at revision {}, the plan predicts {want} from backup {}: the restored data are not the backup's",
                revision.unwrap_or_default(),
                plan.backup_id
            ));
            differs = true;
        }
    }
    if let (Some(got), Some(want)) = (keys, plan.expected_keys) {
        if got != want {
            problems.push(format!(
                "{got} keys, backup {} holds {want}",
                plan.backup_id
            ));
            differs = true;
        }
    }
    DataVerdict {
        revision,
        hashkv,
        keys,
        problems,
        differ: differs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let mut p: Plan = serde_json::from_str(include_str!(
            "../../tests/golden/restore-plan/pitr/plan.json"
        ))
        .expect("golden plan parses");
        (p.expected_revision, p.expected_keys) = (Some(40), Some(0));
        (p.expected_hashkv, p.expected_hashkv_while_compacting) = (Some(7), Some(9));
        p
    }

    fn member(name: &str, plan: &Plan, hashkv: u32) -> MemberCheck {
        MemberCheck {
            name: name.into(),
            member_id: MemberId(1),
            member_id_expected: MemberId(1),
            cluster_id: Some(plan.cluster_id),
            endpoint: "http://127.0.0.1:2379".into(),
            ok: true,
            problems: Vec::new(),
            is_leader: false,
            revision: Some(40),
            hashkv: Some(hashkv),
            keys: Some(0),
        }
    }

    #[test]
    fn members_compacting_or_done_hold_the_same_data() {
        let p = plan();
        for answers in [[7, 7], [9, 9], [9, 7], [7, 9]] {
            let ms: Vec<_> = ["a", "b"]
                .iter()
                .zip(answers)
                .map(|(n, h)| member(n, &p, h))
                .collect();
            let d = judge_data(&p, &ms);
            assert!(!d.differ, "{answers:?}: {:?}", d.problems);
        }
    }

    #[test]
    fn another_hash_is_other_data() {
        let p = plan();
        let d = judge_data(&p, &[member("a", &p, 8), member("b", &p, 8)]);
        assert!(d.differ);
        assert!(
            d.problems[0].contains("the plan predicts 7"),
            "{:?}",
            d.problems
        );
        let d = judge_data(&p, &[member("a", &p, 7), member("b", &p, 8)]);
        assert!(
            d.differ && d.problems[0].contains("differ in hashkv"),
            "{:?}",
            d.problems
        );
    }
}
