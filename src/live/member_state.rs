//! What each answering member says about itself: lag, db size against the quota,
//! fragmentation, its own errors, learners; and across members: size drift, alarms
//! (versions: [`super::versions`]).

use super::doctor::{Exam, Level, MemberRow};
use crate::format::etcd::MemberId;
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
    let (quota, _) = x.quota_of(s);
    let pct = if quota > 0 {
        db as f64 * 100.0 / quota as f64
    } else {
        0.0
    };
    // A NOSPACE alarm is the one finding for a full db (check_alarms names the sizes).
    let nospace = x.view.alarms.iter().any(|a| a.alarm == "NOSPACE");
    if pct >= x.limits.quota_warn_pct && !nospace {
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
    // etcd lists each raised alarm among a member's errors as protobuf text
    // (`memberID:… alarm:NOSPACE`): check_alarms reports those, once, in words.
    for e in s.errors.iter().filter(|e| !is_alarm_text(e)) {
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
        id: MemberId(s.member_id),
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
        quota_bytes: quota,
        other_cluster_id: None,
        version: s.version.clone(),
        storage_version: s.storage_version.clone(),
        revision: s.revision,
        error: None,
    }
}

/// An alarm as etcd's Status lists it among a member's errors: `memberID:… alarm:NOSPACE`.
fn is_alarm_text(e: &str) -> bool {
    e.contains("alarm:") && e.contains("memberID:")
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

/// Findings for the raised alarms, one per kind whichever members raised it; returns them
/// as `NOSPACE on <member>` for the report.
pub(super) fn check_alarms(x: &mut Exam<'_>) -> Vec<String> {
    let view = x.view;
    let mut shown = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    for a in &view.alarms {
        shown.push(format!("{} on {}", a.alarm, x.name(a.member_id)));
        if !kinds.contains(&a.alarm.as_str()) {
            kinds.push(&a.alarm);
        }
    }
    for kind in kinds {
        let raisers: Vec<u64> = view
            .alarms
            .iter()
            .filter(|a| a.alarm == kind)
            .map(|a| a.member_id)
            .collect();
        let who = raisers
            .iter()
            .map(|&id| x.name(id))
            .collect::<Vec<_>>()
            .join(", ");
        let by = if raisers.len() == 1 {
            format!("member {who}")
        } else {
            format!("members {who}")
        };
        match kind {
            "NOSPACE" => {
                let sizes: Vec<String> = raisers
                    .iter()
                    .filter_map(|&id| view.status_of(id))
                    .map(|s| {
                        let (q, _) = x.quota_of(s);
                        format!(
                            "db {} of its {} quota",
                            human_bytes(s.db_size.max(0) as u64),
                            human_bytes(q)
                        )
                    })
                    .collect();
                let sizes = if sizes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", sizes.join("; "))
                };
                let remedy = format!(
                    "Free space, then disarm: {}. Then raise --quota-backend-bytes (8 GiB is the suggested maximum) and set --auto-compaction-retention.",
                    x.cluster.free_space()
                );
                x.push(
                    Level::Error,
                    "alarm-nospace",
                    format!("alarm NOSPACE raised by {by}{sizes}: the db reached its quota, the cluster takes no more writes (they fail with `mvcc: database space exceeded`) until space is freed and the alarm disarmed"),
                    remedy,
                );
            }
            "CORRUPT" => {
                let replace: Vec<String> = raisers
                    .iter()
                    .filter_map(|&id| view.member(id))
                    .map(|m| x.cluster.replace_member(m))
                    .collect();
                let remedy = if replace.is_empty() {
                    "Replace that member (member remove, wipe its data dir, member add).".into()
                } else {
                    format!("Replace that member: {}.", replace.join("; then "))
                };
                x.push(
                    Level::Error,
                    "alarm-corrupt",
                    format!("alarm CORRUPT raised by {by}: its data differs from the others"),
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
                    format!("alarm {other} raised by {by}"),
                    remedy,
                );
            }
        }
    }
    shown
}
