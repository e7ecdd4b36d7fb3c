//! The native restore writer: a restored member's data dir written by lifeboat itself,
//! byte for byte what `etcdutl snapshot restore` writes (formats §7), without etcdutl.
//!
//! A restore must not depend on finding the right etcdutl binary on a broken host, and
//! etcdutl reads the snapshot three times per member (copy, hash, rewrite). Here the
//! snapshot is read once for any number of members: every member's `member/snap/db` is
//! the same bytes (the membership is the whole cluster's), so one pass hashes the source
//! and writes all copies, and one copy-on-write transaction ([`cow_patch`]), computed once,
//! is written over each. Only the WAL's metadata record differs between members.
//!
//! Everything goes to a temporary directory beside the target, is fsynced, and is renamed
//! into place, so a crash or a bad digest never leaves a data dir etcd would start on.

mod dirs;

use std::path::{Path, PathBuf};

use crate::error::InFile;
use crate::format::bolt::write::{cow_patch, Edit, Patch};
use crate::format::bolt::Db;
use crate::format::snap::write::{member_json, restore_snap_styled, V2Member};
use crate::format::wal::write::restore_segment_styled;
pub use crate::format::wal::write::RestoreStyle;
use crate::io::ReadAt;
use crate::restore::ids::{cluster_id, member_id, normalize_peer_url};
use crate::{Error, Result};

/// One member of the restored cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// The restored cluster, as etcdutl's flags describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSpec {
    /// The whole new cluster (`--initial-cluster`).
    pub members: Vec<MemberSpec>,
    /// `--initial-cluster-token`.
    pub token: String,
    /// etcdutl `--bump-revision N` (3.5.10+).
    pub bump_revision: Option<u64>,
    /// etcdutl `--mark-compacted` (needs a bump).
    pub mark_compacted: bool,
}

/// What was written for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenMember {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub data_dir: PathBuf,
}

/// Most members the v2 store's event history holds, hence the most a restore writes.
pub const MAX_MEMBERS: usize = 999;

/// A member with its id and normalised, sorted URLs.
struct Resolved {
    name: String,
    id: u64,
    urls: Vec<String>,
}

/// The cluster a spec describes: members in ascending id order (etcd's order everywhere).
struct Cluster {
    members: Vec<Resolved>,
    cluster_id: u64,
}

fn resolve(spec: &RestoreSpec) -> Result<Cluster> {
    if spec.members.is_empty() {
        return Err(Error::Usage("a restore needs at least one member".into()));
    }
    if spec.members.len() > MAX_MEMBERS {
        return Err(Error::Usage(format!(
            "{} members: a restore writes at most {MAX_MEMBERS}",
            spec.members.len()
        )));
    }
    if spec.mark_compacted && spec.bump_revision.unwrap_or(0) == 0 {
        return Err(Error::Usage(
            "--mark-compacted needs --bump-revision with a positive amount, as in etcdutl".into(),
        ));
    }
    let mut members = Vec::with_capacity(spec.members.len());
    let mut seen_urls = std::collections::BTreeMap::new();
    for m in &spec.members {
        if m.name.is_empty() {
            return Err(Error::Usage("a member needs a name".into()));
        }
        if members.iter().any(|r: &Resolved| r.name == m.name) {
            return Err(Error::Usage(format!(
                "member name {:?} appears twice; give one member all its peer URLs",
                m.name
            )));
        }
        let mut urls = m
            .peer_urls
            .iter()
            .map(|u| normalize_peer_url(u))
            .collect::<Result<Vec<_>>>()?;
        urls.sort();
        for u in &urls {
            if let Some(other) = seen_urls.insert(u.clone(), m.name.clone()) {
                return Err(Error::Usage(format!(
                    "peer URL {u} is given to both {other:?} and {:?}; every URL belongs to one member",
                    m.name
                )));
            }
        }
        let id = member_id(&urls, &spec.token)?;
        if let Some(twin) = members.iter().find(|r: &&Resolved| r.id == id) {
            return Err(Error::Usage(format!(
                "members {:?} and {:?} get the same id {id:x}; give them different peer URLs",
                twin.name, m.name
            )));
        }
        members.push(Resolved {
            name: m.name.clone(),
            id,
            urls,
        });
    }
    members.sort_by_key(|m| m.id);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    Ok(Cluster {
        cluster_id: cluster_id(&ids),
        members,
    })
}

fn u64_be(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// A 17-byte revision key `(main, '_', sub)`.
fn rev_key(main: i64, sub: i64) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

/// The one transaction every member's db gets: etcdutl's restore edits (§7 steps 3–5),
/// and with a bump, 3.5.16's `--bump-revision`/`--mark-compacted` entries. (A restore to
/// a revision replays its changes into the database first: [`crate::restore::replay`].)
fn restore_edits<R: ReadAt>(
    db: &Db<R>,
    spec: &RestoreSpec,
    cluster: &Cluster,
) -> Result<Vec<Edit>> {
    let n = cluster.members.len() as u64;
    let members = cluster
        .members
        .iter()
        .map(|m| {
            let json = member_json(m.id, &m.urls, &m.name);
            (format!("{:x}", m.id).into_bytes(), json.into_bytes())
        })
        .collect();
    let mut meta = vec![
        (b"consistent_index".to_vec(), u64_be(n)),
        (b"term".to_vec(), u64_be(1)),
    ];
    let mut edits = vec![
        Edit {
            bucket: b"cluster".to_vec(),
            ..Edit::default()
        },
        Edit {
            bucket: b"members".to_vec(),
            clear: true,
            puts: members,
        },
        Edit {
            bucket: b"members_removed".to_vec(),
            clear: true,
            puts: vec![],
        },
    ];
    if let Some(bump) = spec.bump_revision.filter(|b| *b > 0) {
        // etcdutl takes the largest revision in `key` (its last key), adds the bump, and
        // stores an empty value there so the store's revision starts above every revision
        // watchers may have seen.
        let last = match db.bucket(b"key").map_err(|e| e.in_file("snapshot"))? {
            Some(b) => b.last().map_err(|e| e.in_file("snapshot"))?,
            None => None,
        };
        let latest = match last {
            Some((k, _)) if k.len() >= 17 => {
                i64::from_be_bytes(k[..8].try_into().unwrap_or_default())
            }
            Some((k, _)) => {
                return Err(Error::Corrupt {
                    file: "snapshot".into(),
                    page: None,
                    offset: None,
                    what: format!(
                        "last key of bucket key is {} bytes, not a revision",
                        k.len()
                    ),
                })
            }
            None => 0,
        };
        let bumped = i64::try_from(bump)
            .ok()
            .and_then(|b| latest.checked_add(b))
            .ok_or_else(|| {
                Error::Usage(format!("--bump-revision {bump} overflows the revision"))
            })?;
        edits.push(Edit {
            bucket: b"key".to_vec(),
            clear: false,
            puts: vec![(rev_key(bumped, 0), Vec::new())],
        });
        if spec.mark_compacted {
            meta.push((b"scheduledCompactRev".to_vec(), rev_key(bumped, 0)));
        }
    }
    edits.push(Edit {
        bucket: b"meta".to_vec(),
        clear: false,
        puts: meta,
    });
    Ok(edits)
}

/// Writes one member's data dir (`<data_dir>/member/{snap/db, snap/*.snap, wal/*.wal}`, or
/// the WAL in `wal_dir`) from a snapshot's database image. See [`write_member_dirs`].
pub fn write_member_dir(
    db: &dyn ReadAt,
    expected_sha256: Option<[u8; 32]>,
    spec: &RestoreSpec,
    name: &str,
    data_dir: &Path,
    wal_dir: Option<&Path>,
) -> Result<WrittenMember> {
    let targets = [(
        name.to_string(),
        data_dir.to_path_buf(),
        wal_dir.map(Path::to_path_buf),
    )];
    let mut v = write_member_dirs(db, expected_sha256, spec, &targets)?;
    v.pop()
        .ok_or_else(|| Error::Internal("restore wrote no member".into()))
}

/// [`write_member_dir`] with the files of `style`'s etcdutl (the target etcd's release).
pub fn write_member_dir_styled(
    db: &dyn ReadAt,
    expected_sha256: Option<[u8; 32]>,
    spec: &RestoreSpec,
    name: &str,
    data_dir: &Path,
    wal_dir: Option<&Path>,
    style: RestoreStyle,
) -> Result<WrittenMember> {
    let targets = [(
        name.to_string(),
        data_dir.to_path_buf(),
        wal_dir.map(Path::to_path_buf),
    )];
    let mut v = write_member_dirs_styled(db, expected_sha256, spec, &targets, style)?;
    v.pop()
        .ok_or_else(|| Error::Internal("restore wrote no member".into()))
}

/// Writes several members' data dirs from ONE read of the snapshot.
///
/// `db` is the database image without the snapshot's SHA-256 trailer; `expected_sha256`
/// (the trailer, or the manifest's digest) is checked while copying, before anything is
/// renamed into place. Each target is (member name, data dir, optional WAL dir); data and
/// WAL dirs must not exist or be empty.
pub fn write_member_dirs(
    db: &dyn ReadAt,
    expected_sha256: Option<[u8; 32]>,
    spec: &RestoreSpec,
    targets: &[(String, PathBuf, Option<PathBuf>)],
) -> Result<Vec<WrittenMember>> {
    write_member_dirs_styled(db, expected_sha256, spec, targets, RestoreStyle::Etcd35)
}

/// [`write_member_dirs`] with the WAL and .snap bytes `style`'s etcdutl writes (the db is
/// the same for every style: see [`RestoreStyle`]).
pub fn write_member_dirs_styled(
    db: &dyn ReadAt,
    expected_sha256: Option<[u8; 32]>,
    spec: &RestoreSpec,
    targets: &[(String, PathBuf, Option<PathBuf>)],
    style: RestoreStyle,
) -> Result<Vec<WrittenMember>> {
    let source = dirs::DbSource::Copy(expected_sha256);
    write_dirs(db, source, spec, targets, style)
}

/// [`write_member_dirs_styled`] for one member whose db is already on disk: `db_file`
/// (on the data dir's filesystem, checked against the plan's SHA-256 by whoever wrote it,
/// the database image only or followed by etcd's 32-byte trailer) is moved into the new
/// data dir and patched in place, not copied. `db_size` is the image's size. On failure
/// `db_file` may be gone; nothing that looks like a data dir is left behind.
pub fn write_member_dir_adopting(
    db_file: &Path,
    db_size: u64,
    spec: &RestoreSpec,
    target: (String, PathBuf, Option<PathBuf>),
    style: RestoreStyle,
) -> Result<WrittenMember> {
    let file = crate::io::FileReader::open(db_file).map_err(|source| Error::Io {
        path: db_file.to_path_buf(),
        source,
    })?;
    if crate::io::ReadAt::size(&file) < db_size {
        return Err(Error::integrity(
            db_file.display().to_string(),
            format!(
                "{} bytes, shorter than the {db_size}-byte database: fetch it again",
                crate::io::ReadAt::size(&file)
            ),
        ));
    }
    let db = file.with_size(db_size);
    let source = dirs::DbSource::Adopt(db_file);
    let mut v = write_dirs(&db, source, spec, &[target], style)?;
    v.pop()
        .ok_or_else(|| Error::Internal("restore wrote no member".into()))
}

fn write_dirs(
    db: &dyn ReadAt,
    source: dirs::DbSource<'_>,
    spec: &RestoreSpec,
    targets: &[(String, PathBuf, Option<PathBuf>)],
    style: RestoreStyle,
) -> Result<Vec<WrittenMember>> {
    let cluster = resolve(spec)?;
    let mut plan = Vec::with_capacity(targets.len());
    for (name, data_dir, wal_dir) in targets {
        let Some(m) = cluster.members.iter().find(|m| &m.name == name) else {
            let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "member {name:?} is not in the restored cluster ({})",
                names.join(", ")
            )));
        };
        plan.push(dirs::Target {
            name: name.clone(),
            member_id: m.id,
            data_dir: data_dir.clone(),
            wal_dir: wal_dir.clone(),
        });
    }
    dirs::check_targets(&plan)?;
    let patch = {
        let bolt = Db::open(db).map_err(|e| e.in_file("snapshot"))?;
        let edits = restore_edits(&bolt, spec, &cluster)?;
        cow_patch(&bolt, &edits).map_err(|e| e.in_file("snapshot"))?
    };
    let members_json: Vec<(u64, Vec<u8>)> = cluster
        .members
        .iter()
        .map(|m| (m.id, member_json(m.id, &m.urls, &m.name).into_bytes()))
        .collect();
    let v2: Vec<V2Member<'_>> = cluster
        .members
        .iter()
        .map(|m| V2Member {
            id: m.id,
            peer_urls: &m.urls,
        })
        .collect();
    let snap = restore_snap_styled(&v2, style);
    let files = |t: &dirs::Target| dirs::MemberFiles {
        wal: restore_segment_styled(t.member_id, cluster.cluster_id, &members_json, style),
        snap: snap.clone(),
    };
    dirs::write_all(db, source, &patch, &plan, files)?;
    Ok(plan
        .into_iter()
        .map(|t| WrittenMember {
            name: t.name,
            member_id: t.member_id,
            cluster_id: cluster.cluster_id,
            data_dir: t.data_dir,
        })
        .collect())
}

/// The copy-on-write transaction a spec applies to `db` (for tests and `restore plan`).
pub fn restore_patch(db: &dyn ReadAt, spec: &RestoreSpec) -> Result<Patch> {
    let cluster = resolve(spec)?;
    let bolt = Db::open(db).map_err(|e| e.in_file("snapshot"))?;
    let edits = restore_edits(&bolt, spec, &cluster)?;
    cow_patch(&bolt, &edits).map_err(|e| e.in_file("snapshot"))
}

#[cfg(test)]
mod tests;
