//! The next step for each verdict, in words an operator can follow at 3 am (field notes §1
//! for replacing one member of a healthy cluster, §2 for restoring after quorum loss).

use super::{MemberReport, Verdict};

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

/// The replacement plan of field notes §1, with this member's id, name and URLs when the
/// log tells them.
fn replace_member(r: &MemberReport) -> Vec<String> {
    let id = r.member_id.clone().unwrap_or_else(|| "<member-id>".into());
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
    let dir = &r.data_dir;
    vec![
        "If the rest of the cluster is healthy (a majority answers `etcdctl endpoint health --cluster`), replace this member; do not try to restart it on this data:".into(),
        format!("  1. Keep etcd stopped on this host (it cannot start on this data)."),
        format!("  2. On a healthy member: `etcdctl member remove {id}`."),
        format!("  3. On a healthy member: `etcdctl member add {name} --peer-urls={url}` (before touching this host; note the ETCD_INITIAL_CLUSTER it prints; if it answers `unhealthy cluster`, wait a few seconds and retry: etcd wants its members connected for 5 s first)."),
        format!("  4. On this host: move the old data aside, e.g. `mv {dir}/member {dir}/member.broken-$(date +%s)` (keep it until the member has caught up)."),
        "  5. Start etcd with ETCD_INITIAL_CLUSTER set to all members (as printed by `member add`) and ETCD_INITIAL_CLUSTER_STATE=existing; it syncs from the leader.".into(),
        "  6. Check: `etcdctl endpoint status --cluster` shows one leader, the same RAFT TERM and close RAFT INDEX everywhere (or `lifeboat status`).".into(),
        "Do not `etcdctl snapshot restore` this member's db on its own: it would start a new one-member cluster (`request cluster ID mismatch`).".into(),
        "If a majority of members is lost (no quorum): restore the whole cluster from the newest backup (`lifeboat restore plan`); if no backup is recent enough, run `lifeboat check-member` on every surviving data dir and restore from the db of the best-ranked one (`etcdutl snapshot restore <dir>/member/snap/db --skip-hash-check` on every node with a new --initial-cluster-token).".into(),
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
        Verdict::TornTail => {
            let p = r
                .problems
                .iter()
                .find(|p| p.severity == super::Severity::Repaired);
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
            ]
        }
        Verdict::CorruptWal | Verdict::CorruptDb => {
            let mut v = Vec::new();
            if let Some(p) = r.problems.iter().find(|p| p.severity == super::Severity::Fatal) {
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
            v.extend(replace_member(r));
            v
        }
        Verdict::CorruptSnap => {
            if r.etcd_starts {
                vec![
                    format!("A snap file is damaged, but etcd works around it: it renames the file to <name>.broken and loads {} instead, replaying more of the WAL. Start etcd as usual.", r.snapshot_file.clone().unwrap_or_else(|| "no snapshot (the WAL from the beginning)".into())),
                    "A damaged file means the disk or file system lost writes: check it (dmesg, SMART) before trusting this host.".into(),
                ]
            } else {
                let mut v = vec!["etcd cannot start: the snapshot it needs is damaged and the WAL no longer reaches back far enough to replace it.".to_string()];
                v.extend(replace_member(r));
                v
            }
        }
        Verdict::Missing => vec![
            "No member data here: check the path (etcd's --data-dir, and --wal-dir if the WAL lives elsewhere).".into(),
            "If the data is gone, this member must be re-added as a new member (field notes §1 steps 2-5) or, with quorum lost, the cluster restored from a backup.".into(),
        ],
    }
}
