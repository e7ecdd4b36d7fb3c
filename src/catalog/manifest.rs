//! The manifest: what a backup holds, written as `<id>.manifest.json` after the data object.
//!
//! The schema is versioned (`format_version`) and documented in DESIGN.md. Fields that
//! `interface.md` promises (`id`, `created_at`, `cluster_id`, `revision`, `raft_term`,
//! `raft_index`, `source_member`, `members`, `etcd_version`, `db_size`, `stored_size`,
//! `db_sha256`, `stored_sha256`, `compression`, `encryption`) keep their names and meaning
//! in every version; new fields may be added, and readers ignore fields they do not know.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const FORMAT_NAME: &str = "lifeboat-backup";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub id: String,
    /// When the snapshot stream started (RFC 3339, UTC).
    pub created_at: String,
    /// When the manifest was written.
    pub completed_at: String,
    /// Cluster id in hex, as etcd reports it.
    pub cluster_id: String,
    /// Store revision of the snapshot: the newest revision in its `key` bucket.
    pub revision: i64,
    /// etcd's compaction revision in the snapshot: the larger of `meta/finishedCompactRev`
    /// and `meta/scheduledCompactRev` (a scheduled compaction resumes when etcd starts).
    #[serde(default)]
    pub compact_revision: Option<i64>,
    /// Raft term of the last applied entry (`meta/term` in the snapshot; 0 before 3.5).
    pub raft_term: u64,
    /// Raft index of the last applied entry (`meta/consistent_index` in the snapshot).
    pub raft_index: u64,
    pub source_member: SourceMember,
    /// The cluster's members when the backup was taken (from the member list).
    pub members: Vec<ManifestMember>,
    /// Server version of the member the snapshot came from.
    pub etcd_version: String,
    /// Size of the database (bbolt high-water mark × page size), without any trailer.
    pub db_size: u64,
    pub page_size: u32,
    /// Size of the stored data object.
    pub stored_size: u64,
    /// SHA-256 of the database bytes; equals the trailer etcd sent, checked in flight.
    pub db_sha256: String,
    /// SHA-256 of the stored data object, as written.
    pub stored_sha256: String,
    /// `zstd` (seekable: independent frames and a seek table, see DESIGN.md).
    pub compression: String,
    #[serde(default)]
    pub compression_level: i32,
    #[serde(default)]
    pub frame_size: u64,
    /// `none`, or the encryption scheme of the data object.
    pub encryption: String,
    /// Name of the data object in the store.
    pub object: String,
    /// Alarms raised in the cluster when the backup was taken (e.g. NOSPACE).
    #[serde(default)]
    pub alarms: Vec<AlarmRecord>,
    /// Health of each endpoint when the backup was taken.
    #[serde(default)]
    pub cluster_status: Vec<EndpointRecord>,
    /// Things an operator should know (lagging members, retries, alarms).
    #[serde(default)]
    pub warnings: Vec<String>,
    pub lifeboat_version: String,
    #[serde(default)]
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceMember {
    /// Member id in hex.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub endpoint: String,
    /// Why this member was chosen.
    #[serde(default)]
    pub reason: String,
    /// Attempts it took (1 when the first stream succeeded).
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestMember {
    /// Member id in hex.
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AlarmRecord {
    pub member_id: String,
    pub alarm: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    pub endpoint: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(default)]
    pub is_leader: bool,
    #[serde(default)]
    pub raft_term: u64,
    #[serde(default)]
    pub raft_index: u64,
    #[serde(default)]
    pub raft_applied_index: u64,
    #[serde(default)]
    pub db_size: i64,
    #[serde(default)]
    pub db_size_in_use: i64,
    #[serde(default)]
    pub version: String,
}

impl Manifest {
    /// Parse and check a manifest; `name` is used in errors.
    pub fn from_json(bytes: &[u8], name: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::integrity(
                name,
                format!("manifest is not valid JSON for lifeboat: {e}"),
            )
        })?;
        if m.format != FORMAT_NAME {
            return Err(Error::integrity(
                name,
                format!("format is {:?}, expected {FORMAT_NAME:?}", m.format),
            ));
        }
        if m.format_version > FORMAT_VERSION {
            return Err(Error::Usage(format!(
                "{name}: manifest format version {} is newer than this lifeboat understands ({FORMAT_VERSION}); upgrade lifeboat",
                m.format_version
            )));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
