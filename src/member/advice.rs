//! The next step for each verdict, as commands an operator can paste at 3 am: this member's
//! id, name, peer URL and data dir filled in (a `<placeholder>` only where the dir does not
//! tell), and a link to the section of the repository's own docs/member-recovery.md that
//! explains it. Only etcdctl/etcdutl and lifeboat commands that exist are named.

use super::{MemberReport, Severity, Verdict};

/// Where the recovery procedures are explained; each advice links one of its sections.
pub const RECOVERY_DOC: &str = "docs/member-recovery.md";

/// `docs/member-recovery.md#<anchor>`, as the last line of an advice.
fn see(anchor: &str) -> String {
    format!("See {RECOVERY_DOC}#{anchor}")
}

fn lost_words(r: &MemberReport) -> String {
    match &r.lost {
        Some(l) if l.entries > 0 => {
            let range = match (l.first_index, l.last_index) {
                (Some(a), Some(b)) => format!(" (raft indexes {a}..{b})"),
                _ => String::new(),
            };
            let bound = if l.complete { "" } else { "at least " };
            format!("{bound}{} entries{range}", l.entries)
        }
        Some(l) if l.complete => "no complete entry".to_string(),
        _ => "the unreadable tail (entry count unknown)".to_string(),
    }
}

/// This member's id, name and first peer URL, from the log or the db's members bucket.
fn identity(r: &MemberReport) -> (String, String, String) {
    let id = r
        .member_id
        .map_or_else(|| "<member-id>".into(), |m| m.to_string());
    let me = r
        .members
        .iter()
        .find(|m| Some(&m.id) == r.member_id.as_ref());
    let name = me
        .and_then(|m| m.name.clone())
        .unwrap_or_else(|| "<name>".into());
    let url = me
        .and_then(|m| m.peer_urls.first().cloned())
        .unwrap_or_else(|| "<peer-url>".into());
    (id, name, url)
}

/// Replacing one member of a healthy cluster, with this member's values.
fn replace_member(r: &MemberReport) -> Vec<String> {
    let (id, name, url) = identity(r);
    let dir = &r.data_dir;
    let ctl = "etcdctl --endpoints=<healthy-client-urls>";
    vec![
        "If a majority of the cluster answers (`etcdctl endpoint health --cluster`), replace this member; do not restart it on this data:".into(),
        "  1. Keep etcd stopped on this host.".into(),
        format!("  2. `{ctl} member remove {id}`"),
        format!("  3. `{ctl} member add {name} --peer-urls={url}` (keep the ETCD_INITIAL_CLUSTER line it prints; on `unhealthy cluster`, wait a few seconds and retry)."),
        format!("  4. On this host: `mv {dir}/member {dir}/member.broken-$(date +%s)` (keep it until the new member has caught up)."),
        "  5. Start etcd with ETCD_INITIAL_CLUSTER as printed in step 3 and ETCD_INITIAL_CLUSTER_STATE=existing; it syncs from the leader.".into(),
        format!("  6. Check: `{ctl} endpoint status --cluster -w table` shows one leader and the same RAFT TERM everywhere."),
        "Do not `etcdutl snapshot restore` this member's db on its own: it would start a separate one-member cluster.".into(),
        see("replace-the-member"),
        format!("If a majority is lost (no quorum), restore the whole cluster instead: {RECOVERY_DOC}#quorum-lost"),
    ]
}

/// Restoring the cluster from this dir's db, the best-ranked survivor after quorum loss.
pub fn restore_from(r: &MemberReport) -> Vec<String> {
    let (_, name, url) = identity(r);
    let dir = &r.data_dir;
    vec![
        "To restore the cluster from this member's db (quorum lost, no newer backup):".into(),
        "  1. Stop etcd on every member.".into(),
        format!("  2. `cp {dir}/member/snap/db /var/tmp/survivor.db` and copy that file to every member's host."),
        format!("  3. On each member (here: {name}): `etcdutl snapshot restore /var/tmp/survivor.db --skip-hash-check --name {name} --initial-cluster <name1>=<peer-url1>,... --initial-cluster-token <new-token> --initial-advertise-peer-urls {url} --data-dir <new-data-dir>` (etcd 3.4: `etcdctl snapshot restore` with the same flags)."),
        "  4. Point each etcd at its <new-data-dir> with the same --initial-cluster and the new token, and start them all.".into(),
        see("quorum-lost"),
    ]
}

pub fn next_steps(r: &MemberReport) -> Vec<String> {
    let mut v = steps(r);
    if let (Some(n), Verdict::Healthy | Verdict::TornTail | Verdict::CorruptSnap) =
        (r.db_ahead_by, r.verdict)
    {
        v.push(format!("But the db is {n} entries ahead of the WAL: etcd will start and then skip the next {n} entries as already applied, so this member's data silently diverges. In a healthy cluster, replace the member instead of starting it (steps below); if it is the only copy, copy its db out first (it holds the newest applied data)."));
        if r.verdict != Verdict::CorruptSnap {
            v.extend(replace_member(r));
        }
    }
    v
}

fn steps(r: &MemberReport) -> Vec<String> {
    match r.verdict {
        Verdict::Healthy => vec![format!(
            "Nothing to repair: etcd starts from {} and replays the WAL up to index {} (commit {}).",
            match &r.snapshot_file {
                Some(f) => format!("snapshot {f}"),
                None => "the beginning of the WAL".to_string(),
            },
            r.last_index,
            r.commit
        )],
        Verdict::TornTail => torn_tail(r),
        Verdict::CorruptWal | Verdict::CorruptDb => {
            let mut v = Vec::new();
            if let Some(p) = r.problems.iter().find(|p| p.severity == Severity::Fatal) {
                let at = match (p.offset, p.record) {
                    (Some(o), Some(n)) => format!(" at offset {o} (record {n})"),
                    _ => String::new(),
                };
                v.push(format!(
                    "etcd will refuse to start ({}): {}{at}.",
                    r.etcd_error.clone().unwrap_or_else(|| "fatal".into()),
                    p.file
                ));
            }
            if r.verdict == Verdict::CorruptWal && r.lost.is_some() {
                v.push(format!(
                    "Past the damage the WAL holds {}: this member cannot replay them.",
                    lost_words(r)
                ));
            }
            v.push(see(r.verdict.as_str()));
            v.extend(replace_member(r));
            v
        }
        Verdict::CorruptSnap => {
            if r.etcd_starts {
                vec![
                    format!("A snap file is damaged, but etcd works around it: it renames the file to <name>.broken and loads {} instead, replaying more of the WAL. Start etcd as usual.", r.snapshot_file.clone().unwrap_or_else(|| "no snapshot (the WAL from the beginning)".into())),
                    "A damaged file means the disk or file system lost writes: check it (`dmesg`, `smartctl -a <device>`) before trusting this host.".into(),
                    see("corrupt-snap"),
                ]
            } else {
                let mut v = vec!["etcd cannot start: the snapshot it needs is damaged and the WAL no longer reaches back far enough to replace it.".to_string(), see("corrupt-snap")];
                v.extend(replace_member(r));
                v
            }
        }
        Verdict::Unreadable => vec![
            format!("Nothing in this dir was read, so nothing is known about this member: do not remove, re-add or restore it on the strength of this run. Run the check again as the user etcd runs as, or as root: `sudo -u etcd lifeboat check-member {0}` or `sudo lifeboat check-member {0}`.", r.data_dir),
            see("unreadable"),
        ],
        Verdict::Running => vec![
            "A running etcd holds this data dir: check the live member instead with `lifeboat status --endpoints <this-member's-client-url>`.".into(),
            format!("To check its files offline, stop etcd on this host first (e.g. `systemctl stop etcd`, or stop its static pod), then run `lifeboat check-member {}` again.", r.data_dir),
            see("running"),
        ],
        Verdict::Missing => vec![
            format!("No member data at {}: check the path (etcd's --data-dir, and --wal-dir if the WAL lives elsewhere).", r.wal_dir),
            format!("If the data is really gone, this member must join again as a new member ({RECOVERY_DOC}#replace-the-member, steps 2-5) or, with quorum lost, the cluster be restored ({RECOVERY_DOC}#quorum-lost)."),
            see("missing"),
        ],
    }
}

fn torn_tail(r: &MemberReport) -> Vec<String> {
    let p = r.problems.iter().find(|p| p.severity == Severity::Repaired);
    let at = p
        .map(|p| format!("{} at offset {}", p.file, p.offset.unwrap_or(0)))
        .unwrap_or_default();
    vec![
        format!("etcd repairs this by itself: start it as usual. It keeps a copy of the damaged file as <file>.broken and cuts the WAL at {at}."),
        match r.lost.as_ref().and_then(|l| l.committed_up_to) {
            Some(c) => format!("Lost with the cut: {}. A HardState after the damage shows entries up to {c} had been committed: this member acknowledged them, so the other members hold them; if this member is the only survivor, they are gone. The log ends at index {} (commit {}).", lost_words(r), r.last_index, r.commit),
            None => format!("Lost with the cut: {}. Nothing after the damage says they were committed (a torn write is one that never finished reaching the disk); the log ends at index {} (commit {}).", lost_words(r), r.last_index, r.commit),
        },
        "In a healthy cluster the member then catches up from the leader. If this was the only copy (quorum lost), the entries above are gone; rank the survivors with `lifeboat check-member DIR...`.".into(),
        see("torn-tail"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::report::empty_report;
    use crate::member::Dirs;

    /// Every verdict's advice links a section of the repo's docs and no outside document.
    #[test]
    fn every_advice_links_the_recovery_doc() {
        let dirs = Dirs::resolve(std::path::Path::new("/var/lib/etcd"), None);
        for v in [
            Verdict::Healthy,
            Verdict::TornTail,
            Verdict::CorruptWal,
            Verdict::CorruptSnap,
            Verdict::CorruptDb,
            Verdict::Unreadable,
            Verdict::Running,
            Verdict::Missing,
        ] {
            let mut r = empty_report(&dirs, v);
            r.etcd_starts = false;
            let text = next_steps(&r).join("\n");
            assert!(
                v == Verdict::Healthy || text.contains("docs/member-recovery.md#"),
                "{v:?}: {text}"
            );
            for bad in ["field notes", "lifeboat restore"] {
                assert!(!text.contains(bad), "{v:?}: {text}");
            }
            if matches!(v, Verdict::Unreadable | Verdict::Running) {
                assert!(!text.contains("member remove"), "{v:?}: {text}");
            }
        }
    }
}
