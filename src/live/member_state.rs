//! What each answering member says about itself: lag, db size against the quota,
//! fragmentation, its own errors, learners; and across members: size drift, alarms
//! (versions: [`super::versions`]).

use super::doctor::{hex, Exam, Level, MemberRow};
use crate::source::etcd::EndpointStatus;
use crate::units::human_bytes;

/// Lag, quota, fragmentation, the member's own errors, learners; and its table row.
pub(super) fn check_member_status(x: &mut Exam<'_>, s: &EndpointStatus) -> MemberRow {
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
            "{}. Long term: raise --quota-backend-bytes (8 GiB is the suggested maximum) and set --auto-compaction-retention.",
            x.cluster.free_space()
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
        storage_version: s.storage_version.clone(),
        revision: s.revision,
        error: None,
    }
}

/// A follower much bigger than the leader drifts (it was seen after raising the quota).
pub(super) fn check_size_drift(x: &mut Exam<'_>) {
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

/// Findings for the raised alarms; returns them as `NOSPACE on <member>` for the report.
pub(super) fn check_alarms(x: &mut Exam<'_>) -> Vec<String> {
    let view = x.view;
    let mut shown = Vec::new();
    for a in &view.alarms {
        let who = x.name(a.member_id);
        shown.push(format!("{} on {who}", a.alarm));
        match a.alarm.as_str() {
            "NOSPACE" => {
                let remedy = format!(
                    "Free space, then disarm: {}. Then raise --quota-backend-bytes (8 GiB is the suggested maximum) and set --auto-compaction-retention.",
                    x.cluster.free_space()
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
