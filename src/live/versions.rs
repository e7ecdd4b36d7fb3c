//! The `version-skew` finding: which member runs which etcd release, and whether the mix
//! is one etcd supports. etcd runs members of one minor version, or of two adjacent minor
//! versions while a rolling upgrade (or a 3.6+ downgrade) is under way; the cluster version
//! (what the cluster as a whole speaks) is the lowest minor version any member runs, so it
//! only moves up once the last member runs the new release.

use super::doctor::{Exam, Level};

/// `(major, minor, patch)` of "3.6.16", "v3.5.1", "3.7.0-rc.1".
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.trim().trim_start_matches('v').split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch: String = it
        .next()
        .unwrap_or("0")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor, patch.parse().unwrap_or(0)))
}

/// Whether etcd supports members of these `(major, minor)` versions in one cluster: one
/// minor version, or two adjacent ones (during an upgrade or a downgrade).
pub fn supported_mix(minors: &[(u32, u32)]) -> bool {
    let mut m = minors.to_vec();
    m.sort();
    m.dedup();
    match m.as_slice() {
        [] | [_] => true,
        [a, b] => a.0 == b.0 && a.1 + 1 == b.1,
        _ => false,
    }
}

/// The first patch release of a minor version the etcd project says to run on every member
/// before any member runs the next minor version, and why: 3.5.20 fixed voters coming back
/// as learners and 3.5.26 removed "zombie" members left in the v3 store
/// (etcd.io/blog/2025/zombie_members_upgrade); the 3.7 upgrade guide asks for 3.6.11.
const SAFE_BEFORE_NEXT: &[((u32, u32), u32, &str)] = &[
    (
        (3, 5),
        26,
        "older 3.5 members can bring removed members back, or turn voters into learners",
    ),
    (
        (3, 6),
        11,
        "earlier 3.6 patch releases may not be compatible with a rolling upgrade to 3.7",
    ),
];

pub(super) fn check_versions(x: &mut Exam<'_>) {
    let mut versions = x.distinct(|s| s.version.clone());
    if versions.len() < 2 {
        return;
    }
    versions.sort_by_key(|v| parse(v));
    let groups: Vec<String> = versions
        .iter()
        .map(|v| {
            let who: Vec<String> = x
                .reachable
                .iter()
                .filter(|s| &s.version == v)
                .map(|s| {
                    let n = x.view.name_of(s.member_id);
                    if n.is_empty() {
                        crate::format::etcd::MemberId(s.member_id).to_string()
                    } else {
                        n
                    }
                })
                .collect();
            format!(
                "{} on {}",
                if v.is_empty() { "?" } else { v },
                who.join(", ")
            )
        })
        .collect();
    let parsed: Vec<(u32, u32, u32)> = versions.iter().filter_map(|v| parse(v)).collect();
    let mut minors: Vec<(u32, u32)> = parsed.iter().map(|p| (p.0, p.1)).collect();
    minors.sort();
    minors.dedup();
    let listed = groups.join("; ");
    let (Some(low), Some(high)) = (minors.first().copied(), minors.last().copied()) else {
        return;
    };
    let mm = |m: (u32, u32)| format!("{}.{}", m.0, m.1);
    if parsed.len() != versions.len() || !supported_mix(&minors) {
        x.push(
            Level::Error,
            "version-skew",
            format!(
                "members run etcd {listed}: not a mix etcd supports (one minor version, or two adjacent ones during a rolling upgrade)"
            ),
            format!(
                "Bring every member to one minor version, one member at a time and one minor version per step ({} first): stop the member, start the next release's etcd on the same data dir with the same flags, wait for `{}` to pass.",
                mm(low),
                x.cluster.ctl("endpoint health")
            ),
        );
        return;
    }
    if low == high {
        x.push(
            Level::Warning,
            "version-skew",
            format!(
                "members run etcd {listed}: patch releases of {}, a mix etcd supports",
                mm(low)
            ),
            "Finish the upgrade: the same patch release on every member, one member at a time."
                .into(),
        );
        return;
    }
    let lagging: Vec<String> = x
        .reachable
        .iter()
        .filter(|s| parse(&s.version).is_some_and(|p| (p.0, p.1) == low))
        .map(|s| x.name(s.member_id))
        .collect();
    let mut message = format!(
        "members run etcd {listed}: a rolling upgrade from {} to {} (or a downgrade back) in progress, a mix etcd supports; the cluster version stays {} until every member runs {}",
        mm(low),
        mm(high),
        mm(low),
        mm(high)
    );
    for (minor, patch, why) in SAFE_BEFORE_NEXT {
        if *minor == low && parsed.iter().any(|p| (p.0, p.1) == low && p.2 < *patch) {
            message.push_str(&format!(
                "; the etcd project says to run {}.{patch} or later on every member before any runs {} ({why})",
                mm(low),
                mm(high)
            ));
        }
    }
    x.push(
        Level::Warning,
        "version-skew",
        message,
        format!(
            "Finish it, one member at a time: stop {}, start etcd {} on the same data dir with the same flags, wait for `{}` to pass before the next.",
            lagging.join(", then "),
            mm(high),
            x.cluster.ctl("endpoint health")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_mixes() {
        assert_eq!(parse("3.6.16"), Some((3, 6, 16)));
        assert_eq!(parse("v3.5.1"), Some((3, 5, 1)));
        assert_eq!(parse("3.7.0-rc.1"), Some((3, 7, 0)));
        assert_eq!(parse(""), None);
        assert!(supported_mix(&[(3, 5), (3, 6)]));
        assert!(supported_mix(&[(3, 6), (3, 7), (3, 7)]));
        assert!(supported_mix(&[(3, 6)]));
        assert!(!supported_mix(&[(3, 5), (3, 7)]));
        assert!(!supported_mix(&[(3, 4), (3, 5), (3, 6)]));
    }

    fn report(versions: &[&str]) -> Vec<crate::live::doctor::Finding> {
        use crate::source::etcd::{ClusterView, EndpointStatus, MemberInfo};
        let n = versions.len() as u64;
        let endpoints = versions
            .iter()
            .zip(1..)
            .map(|(v, id)| EndpointStatus {
                reachable: true,
                error: None,
                member_id: id,
                cluster_id: 9,
                leader: 1,
                raft_term: 2,
                raft_index: 10,
                raft_applied_index: 10,
                version: v.to_string(),
                member_list: (1..=n).collect(),
                ..EndpointStatus::unreachable(&format!("http://10.0.0.{id}:2379"), String::new())
            })
            .collect();
        let members = (1..=n)
            .map(|id| MemberInfo {
                id,
                name: format!("m{id}"),
                peer_urls: vec![format!("http://10.0.0.{id}:2380")],
                client_urls: vec![format!("http://10.0.0.{id}:2379")],
                is_learner: false,
            })
            .collect();
        let view = ClusterView {
            endpoints,
            members,
            alarms: vec![],
            cluster_id: Some(9),
            leader: Some(1),
            last_known_leader: None,
        };
        crate::live::doctor::diagnose(&view, Default::default())
            .findings
            .into_iter()
            .filter(|f| f.check == "version-skew")
            .collect()
    }

    #[test]
    fn the_finding_names_versions_and_judges_the_mix() {
        assert!(report(&["3.6.16", "3.6.16", "3.6.16"]).is_empty());
        let f = &report(&["3.6.16", "3.5.16", "3.5.16"])[0];
        assert_eq!(f.level, Level::Warning);
        assert!(
            f.message.starts_with("members run etcd 3.5.16 on m2, m3; 3.6.16 on m1: a rolling upgrade from 3.5 to 3.6")
                && f.message.contains("a mix etcd supports")
                && f.message.contains("3.5.26 or later"),
            "{}",
            f.message
        );
        assert!(
            f.remedy
                .contains("stop 2 (m2), then 3 (m3), start etcd 3.6"),
            "{}",
            f.remedy
        );
        let f = &report(&["3.7.3", "3.6.16", "3.6.16"])[0];
        assert_eq!(f.level, Level::Warning);
        assert!(!f.message.contains("or later"), "{}", f.message);
        let f = &report(&["3.7.3", "3.6.16", "3.6.2"])[0];
        assert!(f.message.contains("run 3.6.11 or later"), "{}", f.message);
        let f = &report(&["3.5.1", "3.5.16", "3.5.16"])[0];
        assert!(f.message.contains("patch releases of 3.5"), "{}", f.message);
        let f = &report(&["3.7.3", "3.5.16", "3.5.16"])[0];
        assert_eq!(f.level, Level::Error);
        assert!(
            f.message.contains("not a mix etcd supports"),
            "{}",
            f.message
        );
    }
}
