//! The manifest: what a backup holds, written as `<id>.manifest.json` after the data object.
//!
//! The schema is versioned (`format_version`) and documented in DESIGN.md. Fields that
//! docs/json.md promises (`id`, `created_at`, `cluster_id`, `revision`, `raft_term`,
//! `raft_index`, `source_member`, `members`, `etcd_version`, `db_size`, `stored_size`,
//! `db_sha256`, `stored_sha256`, `compression`, `encryption`) keep their names and meaning
//! in every version; new fields may be added, and readers ignore fields they do not know.

use serde::{Deserialize, Serialize};

use super::id::BackupId;
use crate::format::etcd::{ClusterId, MemberId};
use crate::{Error, Result};

pub const FORMAT_NAME: &str = "lifeboat-backup";
/// The version this build writes. Version 1 (no `manifest_sha256`) is still read.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Name of the manifest's own digest field, left out of its canonical form.
pub const DIGEST_FIELD: &str = "manifest_sha256";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub id: BackupId,
    /// When the snapshot stream started (RFC 3339, UTC).
    pub created_at: String,
    /// When the manifest was written.
    pub completed_at: String,
    /// Cluster id in hex, as etcd reports it.
    pub cluster_id: ClusterId,
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
    /// Frames per zstd level actually used (`{"3": 120, "1": 40}`), when the level adapted
    /// to the machine (`compression_level` is then the highest allowed). Absent otherwise.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub compression_levels: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    pub frame_size: u64,
    /// `none`, or the encryption scheme of the data object (`age`: see DESIGN.md).
    pub encryption: String,
    /// With `encryption: "age"`, the public keys the data object is encrypted to, as given
    /// to `--encrypt-to` (never a secret): which identity a restore needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
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
    /// `etcdctl endpoint hashkv` at `revision`, computed offline from the stored snapshot at
    /// backup time, so `restore test` can check a restored member against it. Absent in
    /// manifests written before it existed (and then outside the digest, which stays valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashkv: Option<u32>,
    /// The snapshot's storage version as the source member reported it with the stream
    /// (`SnapshotResponse.version`, the db's `meta/storageVersion`, e.g. `3.6.0`): set by
    /// etcd 3.6 and later, absent for 3.5 and older (and for a 3.6 member whose storage was
    /// not migrated yet). A restore must use an etcd at least this new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_version: Option<String>,
    /// Until when S3 object lock protects the data object (RFC 3339, UTC; the manifest,
    /// written later, is locked a little longer). Absent when nothing is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
    /// SHA-256 (hex) of the manifest's canonical form ([`canonical_json`]); required from
    /// format version 2, so that no field (members, cluster id, times) changes unnoticed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceMember {
    /// Member id in hex.
    pub id: MemberId,
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
    pub id: MemberId,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AlarmRecord {
    pub member_id: MemberId,
    pub alarm: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    pub endpoint: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<MemberId>,
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
    /// Parse and check a manifest read from the object `name` (used in errors).
    ///
    /// Everything that `list` would reject is an integrity error here, so every command
    /// that names a backup applies the same rule: not JSON, another format, an unknown
    /// version (0 included), a missing or wrong `manifest_sha256` (version 2), an `id`
    /// that is not the file name's. Only a version newer than this build is a usage
    /// error: the manifest may be fine, lifeboat is too old.
    pub fn from_json(bytes: &[u8], name: &str) -> Result<Manifest> {
        let bad = |what: String| Error::integrity(name, what);
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("manifest is not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("manifest is not a JSON object".into()))?;
        match obj.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT_NAME) => {}
            other => {
                return Err(bad(format!(
                    "format is {}, expected {FORMAT_NAME:?}",
                    other.map_or("missing".to_string(), |f| format!("{f:?}"))
                )))
            }
        }
        let version = obj
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("format_version is missing or not a number".into()))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(Error::Usage(format!(
                "{name}: manifest format version {version} is newer than this lifeboat understands ({FORMAT_VERSION}); upgrade lifeboat"
            )));
        }
        if version < u64::from(OLDEST_FORMAT_VERSION) {
            return Err(bad(format!(
                "format_version {version} does not exist (versions are {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            )));
        }
        let recorded = obj.get(DIGEST_FIELD);
        match (version, recorded) {
            (1, None) => {}
            (_, Some(serde_json::Value::String(want))) => {
                let got = digest_of(&value);
                if *want != got {
                    return Err(bad(format!(
                        "manifest SHA-256 is {got}, its {DIGEST_FIELD} says {want} (a field was changed or damaged)"
                    )));
                }
            }
            (_, Some(_)) => return Err(bad(format!("{DIGEST_FIELD} is not a string"))),
            (_, None) => {
                return Err(bad(format!(
                    "{DIGEST_FIELD} is missing (required from format version 2)"
                )))
            }
        }
        let m: Manifest = serde_json::from_value(value)
            .map_err(|e| bad(format!("manifest is not valid for lifeboat: {e}")))?;
        let file_name = name.rsplit('/').next().unwrap_or(name);
        if let Some(id) = file_name.strip_suffix(super::MANIFEST_SUFFIX) {
            if m.id != id {
                return Err(bad(format!(
                    "manifest names backup {:?}, not {id:?} as its file name says",
                    m.id
                )));
            }
        }
        if m.object != super::data_name(&m.id) {
            return Err(bad(format!(
                "object is {:?}, expected {:?}",
                m.object,
                super::data_name(&m.id)
            )));
        }
        Ok(m)
    }

    /// Fill in `manifest_sha256` and return the manifest as written, so that what the
    /// backup prints and what `list` reads back carry the same digest.
    pub fn seal(&mut self) -> Result<Vec<u8>> {
        let bytes = self.to_json()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("manifest of backup {}: {e}", self.id)))?;
        if let Some(d) = v.get(DIGEST_FIELD).and_then(|d| d.as_str()) {
            self.manifest_sha256 = d.to_string();
        }
        Ok(bytes)
    }

    /// The manifest as written: pretty JSON with `manifest_sha256` filled in.
    ///
    /// An error, never an empty document: a manifest that cannot be written must fail
    /// the backup, not make one that lists as good and says nothing.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let fail = |e: serde_json::Error| {
            Error::Internal(format!(
                "manifest of backup {} cannot be written: {e}",
                self.id
            ))
        };
        if !self.duration_seconds.is_finite() {
            // JSON has no NaN: it would be written as null, and the manifest would not read.
            return Err(Error::Internal(format!(
                "manifest of backup {} cannot be written: duration_seconds is {}",
                self.id, self.duration_seconds
            )));
        }
        let mut value = serde_json::to_value(self).map_err(fail)?;
        let digest = digest_of(&value);
        let obj = value
            .as_object_mut()
            .ok_or_else(|| Error::Internal("manifest is not a JSON object".into()))?;
        obj.insert(DIGEST_FIELD.into(), serde_json::Value::String(digest));
        let mut v = serde_json::to_vec_pretty(&value).map_err(fail)?;
        v.push(b'\n');
        Ok(v)
    }
}

/// The canonical form of a manifest, over which `manifest_sha256` is computed: the JSON
/// value without its top-level `manifest_sha256` member, written with no whitespace,
/// object keys sorted by their UTF-8 bytes at every level, strings escaped as JSON
/// requires (`\"`, `\\`, control characters; nothing else), numbers in their shortest
/// round-trip form. DESIGN.md states the same rule for other readers.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, true, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, top: bool, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| !(top && k.as_str() == DIGEST_FIELD))
                .collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                if let Some(v) = map.get(k.as_str()) {
                    write_canonical(v, false, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, false, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        // Numbers, booleans and null print one way only.
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly `"`, `\` and control characters.
    out.extend_from_slice(
        serde_json::Value::String(s.to_string())
            .to_string()
            .as_bytes(),
    );
}

/// Hex SHA-256 of a manifest's canonical form.
pub fn digest_of(value: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(canonical_json(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitCode;

    const GOLDEN_V1: &str =
        include_str!("../../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");
    const GOLDEN_NAME: &str = "20261129T053645.864Z-650b5d21591bfd0.manifest.json";

    fn v2() -> (Manifest, Vec<u8>) {
        let mut m = Manifest::from_json(GOLDEN_V1.as_bytes(), GOLDEN_NAME).unwrap();
        m.format_version = FORMAT_VERSION;
        let bytes = m.to_json().unwrap();
        (m, bytes)
    }

    fn edit(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        f(&mut v);
        serde_json::to_vec_pretty(&v).unwrap()
    }

    #[test]
    fn v2_round_trips_with_its_digest_and_v1_still_reads() {
        let (m, bytes) = v2();
        let back = Manifest::from_json(&bytes, GOLDEN_NAME).unwrap();
        assert_eq!(back.manifest_sha256.len(), 64);
        let mut sealed = m.clone();
        assert_eq!(sealed.seal().unwrap(), bytes);
        assert_eq!(sealed.manifest_sha256, back.manifest_sha256);
        assert_eq!(back.id, m.id);
        // The digest does not depend on key order or whitespace.
        let compact =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
                .unwrap();
        Manifest::from_json(&compact, GOLDEN_NAME).unwrap();
        // A v1 manifest (no digest recorded) reads.
        let v1 = Manifest::from_json(GOLDEN_V1.as_bytes(), GOLDEN_NAME).unwrap();
        assert!(v1.manifest_sha256.is_empty());
    }

    #[test]
    fn any_changed_field_is_an_integrity_error() {
        let (_, bytes) = v2();
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "peer_urls",
                Box::new(|v| v["members"][0]["peer_urls"][0] = "http://10.0.0.9:2380".into()),
            ),
            ("cluster_id", Box::new(|v| v["cluster_id"] = "1".into())),
            (
                "created_at",
                Box::new(|v| v["created_at"] = "2020-01-01T00:00:00Z".into()),
            ),
            (
                "source_member",
                Box::new(|v| v["source_member"]["name"] = "other".into()),
            ),
            ("encryption", Box::new(|v| v["encryption"] = "nonf".into())),
            ("unknown field", Box::new(|v| v["extra"] = 1.into())),
            (
                "digest removed",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove(DIGEST_FIELD);
                }),
            ),
        ];
        for (what, f) in edits {
            let e = Manifest::from_json(&edit(&bytes, f), GOLDEN_NAME).unwrap_err();
            assert_eq!(e.exit_code(), ExitCode::Integrity, "{what}: {e}");
        }
    }

    #[test]
    fn versions_ids_and_garbage() {
        let (_, bytes) = v2();
        for v in [0u64, 7] {
            let b = edit(&bytes, |x| x["format_version"] = v.into());
            let e = Manifest::from_json(&b, GOLDEN_NAME).unwrap_err();
            let want = if v == 0 {
                ExitCode::Integrity
            } else {
                ExitCode::Usage
            };
            assert_eq!(e.exit_code(), want, "{v}: {e}");
            if v == 7 {
                assert!(e.to_string().contains("upgrade lifeboat"), "{e}");
            }
        }
        // The id must be the file name's, whatever directory it is read from.
        let e = Manifest::from_json(&bytes, "/d/20990101T000000.000Z-1.manifest.json").unwrap_err();
        assert_eq!(e.exit_code(), ExitCode::Integrity);
        assert!(e.to_string().contains("file name"), "{e}");
        for junk in [&b""[..], b"{", b"[]", b"{\"format\":\"x\"}"] {
            let e = Manifest::from_json(junk, GOLDEN_NAME).unwrap_err();
            assert_eq!(e.exit_code(), ExitCode::Integrity);
        }
    }

    #[test]
    fn a_manifest_that_cannot_be_written_is_an_error_not_an_empty_document() {
        let (mut m, _) = v2();
        m.duration_seconds = f64::NAN;
        let e = m.to_json().unwrap_err();
        assert!(e.to_string().contains("duration_seconds"), "{e}");
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"b": [1, {"z": "\"q\"", "a": 1.5}], "a": null, "manifest_sha256": "x"}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":null,"b":[1,{"a":1.5,"z":"\"q\""}]}"#
        );
    }
}
