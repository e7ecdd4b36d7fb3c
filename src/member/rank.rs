//! Ranking surviving members: which data dir holds the newest committed data, to copy the db
//! from when no backup is recent enough (field notes §2).

use serde::Serialize;

use super::{MemberReport, Verdict};

#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub rank: usize,
    pub data_dir: String,
    pub member_id: Option<String>,
    pub verdict: Verdict,
    pub commit: u64,
    pub term: u64,
    pub last_index: u64,
    pub last_term: u64,
    /// Usable as the db source (its db opens).
    pub db_usable: bool,
    pub note: String,
}

/// Rank dirs by HardState commit, then term, then last log (term, index): the member whose
/// applied state is newest first. Missing dirs are left out.
pub fn rank(reports: &[MemberReport]) -> Vec<Ranked> {
    let mut v: Vec<&MemberReport> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Missing)
        .collect();
    v.sort_by(|a, b| {
        (b.commit, b.hard_state.term, b.last_term, b.last_index).cmp(&(
            a.commit,
            a.hard_state.term,
            a.last_term,
            a.last_index,
        ))
    });
    v.iter()
        .enumerate()
        .map(|(i, r)| {
            let db_usable = r.verdict != Verdict::CorruptDb && r.db.is_some();
            let note = match r.verdict {
                Verdict::CorruptDb => "db damaged: do not copy it".to_string(),
                Verdict::CorruptWal => {
                    "WAL damaged; its db may still be copied (it holds what was applied)"
                        .to_string()
                }
                _ if i == 0 => "newest committed data: copy member/snap/db from here".to_string(),
                _ => String::new(),
            };
            Ranked {
                rank: i + 1,
                data_dir: r.data_dir.clone(),
                member_id: r.member_id.clone(),
                verdict: r.verdict,
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
