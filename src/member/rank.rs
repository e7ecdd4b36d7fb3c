//! Ranking surviving members: which data dir holds the newest committed data, to copy the db
//! from when no backup is recent enough (docs/member-recovery.md#quorum-lost).

use serde::Serialize;

use super::{MemberReport, Verdict};

#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub rank: usize,
    pub data_dir: String,
    pub member_id: Option<crate::format::etcd::MemberId>,
    pub verdict: Verdict,
    /// The db's consistent index (last applied raft index), when the db opens.
    pub db_consistent_index: Option<u64>,
    pub commit: u64,
    pub term: u64,
    pub last_index: u64,
    pub last_term: u64,
    /// Usable as the db source (its db opens).
    pub db_usable: bool,
    pub note: String,
}

/// The sort key: what the db holds (its consistent index; a db that does not open counts
/// as nothing), then HardState commit and term, then the last log entry (term, index).
fn key(r: &MemberReport) -> (u64, u64, u64, u64, u64) {
    let ci = match (&r.db, r.verdict) {
        (_, Verdict::CorruptDb) => 0,
        (Some(d), _) => d.consistent_index.unwrap_or(0),
        (None, _) => 0,
    };
    (ci, r.commit, r.hard_state.term, r.last_term, r.last_index)
}

/// Rank dirs, newest data first (see [`key`]): the db to copy when no backup is recent
/// enough. Dirs that were not judged (missing, unreadable, running) are left out.
pub fn rank(reports: &[MemberReport]) -> Vec<Ranked> {
    let mut v: Vec<&MemberReport> = reports.iter().filter(|r| r.verdict.was_judged()).collect();
    v.sort_by_key(|r| std::cmp::Reverse(key(r)));
    v.iter()
        .enumerate()
        .map(|(i, r)| {
            let db_usable = r.verdict != Verdict::CorruptDb && r.db.is_some();
            let note = match r.verdict {
                Verdict::CorruptDb => "db damaged: do not copy it".to_string(),
                Verdict::CorruptWal if i == 0 => "newest data: copy member/snap/db from here (its WAL is damaged; the db holds what was applied)".to_string(),
                _ if i == 0 => "newest data: copy member/snap/db from here".to_string(),
                Verdict::CorruptWal => "WAL damaged; its db is still readable".to_string(),
                _ => String::new(),
            };
            Ranked {
                rank: i + 1,
                data_dir: r.data_dir.clone(),
                member_id: r.member_id,
                verdict: r.verdict,
                db_consistent_index: r.db.as_ref().and_then(|d| d.consistent_index),
                commit: r.commit,
                term: r.hard_state.term,
                last_index: r.last_index,
                last_term: r.last_term,
                db_usable,
                note,
            }
        })
        .collect()
}
