//! What a check says about one data dir: the verdict, the problems found, and the facts an
//! operator needs to act (the `check-member -o json` document of docs/json.md).

use std::path::Path;

use serde::Serialize;

use super::{db, Dirs};
use crate::format::etcd::{ClusterId, MemberId};
use crate::format::wal::{self, open::Start};

/// The verdict on one data dir (docs/json.md, docs/member-recovery.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Healthy,
    TornTail,
    CorruptDb,
    CorruptSnap,
    CorruptWal,
    /// The dir (or a file in it) exists but cannot be read by this user: nothing is known
    /// about the member, and nothing may be done to it on that basis.
    Unreadable,
    /// A running etcd holds the db's lock: its files change while they are read, so they
    /// are not judged.
    Running,
    Missing,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::TornTail => "torn-tail",
            Verdict::CorruptWal => "corrupt-wal",
            Verdict::CorruptSnap => "corrupt-snap",
            Verdict::CorruptDb => "corrupt-db",
            Verdict::Unreadable => "unreadable",
            Verdict::Running => "running",
            Verdict::Missing => "missing",
        }
    }
    /// The dir's files were read and judged (not missing, unreadable or in use).
    pub fn was_judged(self) -> bool {
        !matches!(
            self,
            Verdict::Missing | Verdict::Unreadable | Verdict::Running
        )
    }
    pub fn is_corrupt(self) -> bool {
        matches!(
            self,
            Verdict::CorruptWal | Verdict::CorruptSnap | Verdict::CorruptDb
        )
    }
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// etcd refuses to start because of it.
    Fatal,
    /// etcd repairs it by itself (torn tail, broken snap file set aside).
    Repaired,
    /// Worth knowing; etcd does not care.
    Warning,
}

/// One problem found (docs/json.md: `file`, `offset`, `record`, `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: String,
    /// Byte offset of the bad record's length field (WAL), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// 1-based record number within the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// Raft index of (or expected at) the bad record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    pub message: String,
    /// The error etcd logs for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
}

/// Entries that etcd will not have after starting (torn tail) or that lie past the damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub entries: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// The count is exact (false: salvage could not follow every frame; at least this many).
    /// A damaged record that was cut short or does not decode is counted only when a later
    /// entry shows its index.
    pub complete: bool,
    /// Records (of any type) from the damaged one to the end, the damaged one included.
    pub records: u64,
    /// A HardState past the damage says entries up to here were committed (this member had
    /// acknowledged them; other members hold them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_up_to: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    pub name: String,
    pub seq: u64,
    pub first_index: u64,
    pub size: u64,
    /// Offset just past the last good record.
    pub end: u64,
    pub records: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapReport {
    pub name: String,
    pub size: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The one etcd loads.
    pub chosen: bool,
}

/// A member as named in the log (conf change context).
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub id: MemberId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub peer_urls: Vec<String>,
}

/// Everything known about one data dir.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub data_dir: String,
    pub wal_dir: String,
    pub verdict: Verdict,
    /// Prediction: etcd starts on this dir as it is (possibly after repairing it itself).
    pub etcd_starts: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<ClusterId>,
    /// Last raft index etcd will have (after any repair).
    pub last_index: u64,
    pub last_term: u64,
    /// HardState commit (after any repair).
    pub commit: u64,
    pub hard_state: wal::record::HardState,
    /// The snapshot etcd starts from (index 0: none, the WAL from the beginning).
    pub snapshot: Start,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_file: Option<String>,
    pub wal_segments: Vec<SegmentReport>,
    pub wal_records: u64,
    pub wal_entries: u64,
    pub wal_bytes: u64,
    /// Entries overwritten by a later leader (uncommitted entries replaced; normal).
    pub overwritten_entries: u64,
    pub snap_files: Vec<SnapReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<db::DbCheck>,
    /// Voters (and learners) after the chosen snapshot and committed conf changes.
    pub voters: Vec<MemberId>,
    pub learners: Vec<MemberId>,
    pub members: Vec<MemberInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
    /// The db's consistent index is this far beyond the WAL's last index (see problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_ahead_by: Option<u64>,
    pub problems: Vec<Problem>,
    pub next_steps: Vec<String>,
}

pub(crate) fn empty_report(dirs: &Dirs, verdict: Verdict) -> MemberReport {
    MemberReport {
        data_dir: dirs.data_dir.display().to_string(),
        wal_dir: dirs.wal_dir.display().to_string(),
        verdict,
        etcd_starts: true,
        etcd_error: None,
        member_id: None,
        cluster_id: None,
        last_index: 0,
        last_term: 0,
        commit: 0,
        hard_state: Default::default(),
        snapshot: Start::default(),
        snapshot_file: None,
        wal_segments: Vec::new(),
        wal_records: 0,
        wal_entries: 0,
        wal_bytes: 0,
        overwritten_entries: 0,
        snap_files: Vec::new(),
        db: None,
        voters: Vec::new(),
        learners: Vec::new(),
        members: Vec::new(),
        lost: None,
        db_ahead_by: None,
        problems: Vec::new(),
        next_steps: Vec::new(),
    }
}

pub(crate) fn fatal_db(p: &Path, message: String) -> Problem {
    Problem {
        severity: Severity::Fatal,
        file: p.display().to_string(),
        offset: None,
        record: None,
        index: None,
        message,
        etcd_error: None,
    }
}

pub(crate) fn warning(file: &str, message: String) -> Problem {
    Problem {
        severity: Severity::Warning,
        file: file.to_string(),
        offset: None,
        record: None,
        index: None,
        message,
        etcd_error: None,
    }
}

impl MemberReport {
    /// The verdict and its first fatal (or repaired) problem in one line, e.g. `corrupt-wal:
    /// /d/member/wal/0.wal offset 0 record 1: ...`: what every command says about this dir.
    pub fn headline(&self) -> String {
        let first = self
            .problems
            .iter()
            .find(|p| matches!(p.severity, Severity::Fatal | Severity::Repaired));
        match first {
            Some(p) => format!("{}: {}", self.verdict.as_str(), p.located()),
            None => self.verdict.as_str().to_string(),
        }
    }
}

impl Problem {
    /// `FILE[ offset O][ record N][ index I]: MESSAGE`.
    pub fn located(&self) -> String {
        let mut at = String::new();
        if let Some(o) = self.offset {
            at.push_str(&format!(" offset {o}"));
        }
        if let Some(n) = self.record {
            at.push_str(&format!(" record {n}"));
        }
        if let Some(i) = self.index {
            at.push_str(&format!(" index {i}"));
        }
        format!("{}{at}: {}", self.file, self.message)
    }
}

/// Fatal first, then what etcd repairs, then warnings; stable within each.
pub(crate) fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by_key(|p| match p.severity {
        Severity::Fatal => 0,
        Severity::Repaired => 1,
        Severity::Warning => 2,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids are typed but the document is the one docs/json.md shows: lower-case hex
    /// strings without padding, as the `format!("{:x}")` they replace wrote them.
    #[test]
    fn ids_serialize_as_the_hex_strings_they_were() {
        let dirs = Dirs::resolve(Path::new("/d"), None);
        let mut r = empty_report(&dirs, Verdict::Healthy);
        r.member_id = Some(MemberId(0x8e9e05c52164694d));
        r.cluster_id = Some(ClusterId(0xcdf818194e3a8c32));
        r.voters = vec![MemberId(0xab), MemberId(0x8e9e05c52164694d)];
        r.learners = vec![MemberId(1)];
        r.members = vec![MemberInfo {
            id: MemberId(0xab),
            name: None,
            peer_urls: vec![],
        }];
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["member_id"], "8e9e05c52164694d");
        assert_eq!(v["cluster_id"], "cdf818194e3a8c32");
        assert_eq!(v["voters"], serde_json::json!(["ab", "8e9e05c52164694d"]));
        assert_eq!(v["learners"], serde_json::json!(["1"]));
        assert_eq!(v["members"][0]["id"], "ab");
    }
}
