//! etcd's use of bbolt (its `member/snap/db` backend): bucket names, revision keys, the values in the
//! `meta`, `members`, `cluster`, `alarm`, `auth` buckets, and the cheap [`summary`] the
//! backup pipeline runs on every backup.
//!
//! [`summary`] reads only the meta pages, the root bucket, the small buckets and the
//! rightmost path of bucket `key`: a handful of pages, whatever the database size.

pub mod hashkv;
pub mod ids;
mod k8s;
pub mod proto;
pub mod report;

use serde::{Serialize, Serializer};

use crate::bolt::{Bucket, Db, FormatError, Problem};
use crate::io::ReadAt;

pub use ids::{ClusterId, MemberId};
pub use proto::{AlarmMember, KeyValueRef, Lease};

/// Bucket names of etcd 3.5.
pub mod buckets {
    pub const ALARM: &[u8] = b"alarm";
    pub const AUTH: &[u8] = b"auth";
    pub const AUTH_ROLES: &[u8] = b"authRoles";
    pub const AUTH_USERS: &[u8] = b"authUsers";
    pub const CLUSTER: &[u8] = b"cluster";
    pub const KEY: &[u8] = b"key";
    pub const LEASE: &[u8] = b"lease";
    pub const MEMBERS: &[u8] = b"members";
    pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
    pub const META: &[u8] = b"meta";
}

/// A revision: `main` (store revision of a txn) and `sub` (change within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// A `key` bucket key: a revision, and whether it marks a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevKey {
    pub rev: Revision,
    pub tombstone: bool,
}

impl RevKey {
    /// Decode 17 bytes `main BE, '_', sub BE`, plus a trailing `'t'` for a tombstone.
    pub fn parse(k: &[u8]) -> Option<RevKey> {
        let tombstone = match k.len() {
            17 => false,
            18 if k.get(17) == Some(&b't') => true,
            _ => return None,
        };
        if k.get(8) != Some(&b'_') {
            return None;
        }
        let main = i64::from_be_bytes(k.get(0..8)?.try_into().ok()?);
        let sub = i64::from_be_bytes(k.get(9..17)?.try_into().ok()?);
        Some(RevKey {
            rev: Revision { main, sub },
            tombstone,
        })
    }

    /// The 17-byte key of a revision (no tombstone mark).
    pub fn encode(rev: Revision) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[..8].copy_from_slice(&rev.main.to_be_bytes());
        k[8] = b'_';
        k[9..].copy_from_slice(&rev.sub.to_be_bytes());
        k
    }
}

fn ser_hex<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:x}"))
}

/// A cluster member as recorded in bucket `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Member id; JSON shows it as lower-case hex, like etcdctl.
    #[serde(serialize_with = "ser_hex")]
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Usually empty: etcd 3.5 writes the backend copy once, without client URLs.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(serde::Deserialize)]
struct MemberJson {
    id: u64,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
    #[serde(default)]
    name: String,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

/// A raised alarm (bucket `alarm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    #[serde(serialize_with = "ser_hex")]
    pub member_id: u64,
    /// `NOSPACE`, `CORRUPT`, ...
    pub alarm: String,
}

/// `raftpb.ConfState` as etcd stores it in `meta/confState` (JSON, decimal ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConfState {
    #[serde(default)]
    pub voters: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters_outgoing: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners_next: Vec<u64>,
    #[serde(default)]
    pub auto_leave: bool,
}

/// What the backup pipeline records about every database; cheap to compute. The
/// `inspect` report embeds it (its fields are top-level fields of `inspect -o json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Main revision of the last key in bucket `key` (0 if empty): etcdutl's revision.
    pub revision: i64,
    /// etcd's compaction revision (`compactMainRev` after a restart): the larger of
    /// `meta/finishedCompactRev` and `meta/scheduledCompactRev`; None if never compacted.
    pub compact_revision: Option<i64>,
    /// `meta/finishedCompactRev` (absent while the first compaction is still running).
    pub finished_compact_revision: Option<i64>,
    /// `meta/scheduledCompactRev`.
    pub scheduled_compact_revision: Option<i64>,
    pub consistent_index: u64,
    pub term: u64,
    pub conf_state: Option<ConfState>,
    pub members: Vec<Member>,
    /// Ids of removed members (bucket `members_removed`), hex in JSON as etcdctl prints them.
    #[serde(serialize_with = "ser_hex_vec")]
    pub removed_members: Vec<u64>,
    pub cluster_version: Option<String>,
    /// `meta/storageVersion` (etcd 3.6+), None before 3.6.
    pub storage_version: Option<String>,
    pub alarms: Vec<Alarm>,
    pub auth_enabled: bool,
    /// `pgid * page_size`: etcdutl's totalSize (without any trailer).
    pub db_size: u64,
    pub page_size: u32,
    /// bbolt transaction id of the current meta.
    pub txid: u64,
}

fn ser_hex_vec<S: Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|id| format!("{id:x}")))
}

fn bad(bucket: &[u8], key: &[u8], what: impl std::fmt::Display) -> FormatError {
    FormatError::Corrupt(Problem::new(
        None,
        None,
        format!(
            "{}/{}: {what}",
            String::from_utf8_lossy(bucket),
            String::from_utf8_lossy(key)
        ),
    ))
}

fn be_u64(bucket: &[u8], key: &[u8], v: &[u8]) -> Result<u64, FormatError> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| bad(bucket, key, format!("{} bytes, want 8", v.len())))?;
    Ok(u64::from_be_bytes(a))
}

fn compact_rev(bucket: &[u8], key: &[u8], v: &[u8]) -> Result<i64, FormatError> {
    RevKey::parse(v)
        .map(|r| r.rev.main)
        .ok_or_else(|| bad(bucket, key, "not a revision"))
}

/// The `meta` bucket's raft and compaction fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaFields {
    pub consistent_index: u64,
    pub term: u64,
    pub conf_state: Option<ConfState>,
    pub finished_compact: Option<i64>,
    pub scheduled_compact: Option<i64>,
    /// `meta/storageVersion` (etcd 3.6+: e.g. `3.6.0`; absent before 3.6).
    pub storage_version: Option<String>,
}

/// `meta/storageVersion`: the schema version etcd 3.6+ writes once its cluster version is
/// known (`"3.6.0"` on 3.6, `"3.7.0"` on 3.7: {major, minor} printed as a semver).
pub const STORAGE_VERSION: &[u8] = b"storageVersion";

/// Read the `meta` bucket's known keys.
pub fn meta_fields<R: ReadAt>(db: &Db<R>) -> Result<MetaFields, FormatError> {
    use buckets::META;
    let mut m = MetaFields::default();
    let Some(b) = db.bucket(META)? else {
        return Ok(m);
    };
    if let Some(v) = b.get(b"consistent_index")? {
        m.consistent_index = be_u64(META, b"consistent_index", &v)?;
    }
    if let Some(v) = b.get(b"term")? {
        m.term = be_u64(META, b"term", &v)?;
    }
    if let Some(v) = b.get(b"confState")? {
        m.conf_state =
            Some(serde_json::from_slice(&v).map_err(|e| bad(META, b"confState", format!("{e}")))?);
    }
    if let Some(v) = b.get(b"finishedCompactRev")? {
        m.finished_compact = Some(compact_rev(META, b"finishedCompactRev", &v)?);
    }
    if let Some(v) = b.get(b"scheduledCompactRev")? {
        m.scheduled_compact = Some(compact_rev(META, b"scheduledCompactRev", &v)?);
    }
    if let Some(v) = b.get(STORAGE_VERSION)? {
        m.storage_version = Some(String::from_utf8_lossy(&v).into_owned());
    }
    Ok(m)
}

/// Parse a `members` bucket entry (hex id key, JSON value).
pub fn parse_member(k: &[u8], v: &[u8]) -> Result<Member, FormatError> {
    use buckets::MEMBERS;
    let id = std::str::from_utf8(k)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| bad(MEMBERS, k, "key is not a hex member id"))?;
    let j: MemberJson =
        serde_json::from_slice(v).map_err(|e| bad(MEMBERS, k, format!("bad JSON: {e}")))?;
    if j.id != id {
        return Err(bad(
            MEMBERS,
            k,
            format!("JSON id {:x} differs from the key", j.id),
        ));
    }
    Ok(Member {
        id,
        name: j.name,
        peer_urls: j.peer_urls,
        client_urls: j.client_urls,
        is_learner: j.is_learner,
    })
}

fn for_each<R: ReadAt>(
    b: &Bucket<'_, R>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let mut c = b.cursor();
    while let Some(e) = c.next()? {
        f(e.key, e.value)?;
    }
    Ok(())
}

/// Members, removed member ids, cluster version, alarms, auth enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFields {
    pub members: Vec<Member>,
    pub removed_members: Vec<u64>,
    pub cluster_version: Option<String>,
    pub alarms: Vec<Alarm>,
    pub auth_enabled: bool,
}

/// Read the small cluster buckets (`members`, `members_removed`, `cluster`, `alarm`, `auth`).
pub fn cluster_fields<R: ReadAt>(db: &Db<R>) -> Result<ClusterFields, FormatError> {
    let mut c = ClusterFields::default();
    if let Some(b) = db.bucket(buckets::MEMBERS)? {
        for_each(&b, |k, v| {
            c.members.push(parse_member(k, v)?);
            Ok(())
        })?;
    }
    if let Some(b) = db.bucket(buckets::MEMBERS_REMOVED)? {
        for_each(&b, |k, _| {
            let id = std::str::from_utf8(k)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad(buckets::MEMBERS_REMOVED, k, "key is not a hex member id"))?;
            c.removed_members.push(id);
            Ok(())
        })?;
    }
    if let Some(b) = db.bucket(buckets::CLUSTER)? {
        if let Some(v) = b.get(b"clusterVersion")? {
            c.cluster_version = Some(String::from_utf8_lossy(&v).into_owned());
        }
    }
    if let Some(b) = db.bucket(buckets::ALARM)? {
        for_each(&b, |k, _| {
            let a = AlarmMember::decode(k).map_err(|e| bad(buckets::ALARM, k, e))?;
            c.alarms.push(Alarm {
                member_id: a.member_id,
                alarm: a.alarm_name(),
            });
            Ok(())
        })?;
    }
    if let Some(b) = db.bucket(buckets::AUTH)? {
        if let Some(v) = b.get(b"authEnabled")? {
            c.auth_enabled = v.first() == Some(&1);
        }
    }
    Ok(c)
}

/// The largest revision in bucket `key` (main of its last key), 0 if empty.
pub fn last_revision<R: ReadAt>(db: &Db<R>) -> Result<i64, FormatError> {
    let Some(b) = db.bucket(buckets::KEY)? else {
        return Ok(0);
    };
    match b.last()? {
        None => Ok(0),
        Some((k, _)) => RevKey::parse(&k)
            .map(|r| r.rev.main)
            .ok_or_else(|| bad(buckets::KEY, &k, "last key is not a revision")),
    }
}

/// The cheap summary of a database image (see the module docs for what it reads).
pub fn summary<R: ReadAt + ?Sized>(src: &R) -> Result<Summary, FormatError> {
    let db = Db::open(src)?;
    summary_of(&db)
}

/// [`summary`] of an already opened database.
pub fn summary_of<R: ReadAt>(db: &Db<R>) -> Result<Summary, FormatError> {
    let m = meta_fields(db)?;
    let c = cluster_fields(db)?;
    Ok(Summary {
        page_size: db.page_size,
        db_size: db.db_size(),
        txid: db.meta.txid,
        revision: last_revision(db)?,
        compact_revision: m.finished_compact.max(m.scheduled_compact),
        finished_compact_revision: m.finished_compact,
        scheduled_compact_revision: m.scheduled_compact,
        consistent_index: m.consistent_index,
        term: m.term,
        conf_state: m.conf_state,
        members: c.members,
        removed_members: c.removed_members,
        cluster_version: c.cluster_version,
        storage_version: m.storage_version,
        alarms: c.alarms,
        auth_enabled: c.auth_enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rev_keys() {
        let k = RevKey::encode(Revision { main: 8, sub: 1 });
        assert_eq!(
            RevKey::parse(&k),
            Some(RevKey {
                rev: Revision { main: 8, sub: 1 },
                tombstone: false
            })
        );
        let mut t = k.to_vec();
        t.push(b't');
        assert!(RevKey::parse(&t).unwrap().tombstone);
        t[17] = b'x';
        assert_eq!(RevKey::parse(&t), None);
        assert_eq!(RevKey::parse(&k[..16]), None);
    }

    #[test]
    fn member_json() {
        let m = parse_member(
            b"3431175fc878b2e0",
            br#"{"id":3760812863983760096,"peerURLs":["http://10.0.0.1:2380"],"name":"m1"}"#,
        )
        .unwrap();
        assert_eq!(m.id, 0x3431175fc878b2e0);
        assert_eq!(m.name, "m1");
        assert!(!m.is_learner);
        assert!(parse_member(b"zz", b"{}").is_err());
        assert!(parse_member(b"1", br#"{"id":2}"#).is_err());
    }

    #[test]
    fn summary_of_built_db() {
        let img = crate::bolt::build::etcd_like(4096, 500, 30);
        let s = summary(&img[..]).unwrap();
        assert_eq!(s.revision, 501);
        assert_eq!(s.consistent_index, 9);
        assert_eq!(s.term, 2);
        assert_eq!(s.cluster_version.as_deref(), Some("3.5.0"));
        assert_eq!(s.members.len(), 1);
        assert_eq!(s.members[0].id, 0xad3dd0882f6c4e00);
        assert_eq!(s.members[0].name, "src");
        assert_eq!(
            s.conf_state.as_ref().unwrap().voters,
            vec![0xad3dd0882f6c4e00]
        );
        assert!(!s.auth_enabled);
        assert_eq!(s.db_size, img.len() as u64);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["members"][0]["id"], "ad3dd0882f6c4e00");
    }

    #[test]
    fn conf_state_json() {
        let c: ConfState =
            serde_json::from_str(r#"{"voters":[12483363025470639616],"auto_leave":false}"#)
                .unwrap();
        assert_eq!(c.voters, vec![12483363025470639616]);
    }
}
