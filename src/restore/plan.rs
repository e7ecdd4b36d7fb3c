//! `restore plan`: a validated topology plus a verified backup become `plan.json`, a runbook
//! and one script per node.
//!
//! Everything that can be checked is checked before the first file is written: a plan
//! directory either holds a complete, consistent plan or nothing new. The ids in
//! `plan.json` are computed as etcd computes them, so the operator can compare
//! `etcdctl member list` against the plan after the restore instead of trusting it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::ids;
use super::topology::{problems_error, Member, Problem, Topology};
use crate::catalog::Manifest;
use crate::error::IoContext;
use crate::format::etcd::{ClusterId, MemberId};
use crate::{Error, Result};

pub const PLAN_FORMAT: &str = "lifeboat-restore-plan";
pub const PLAN_VERSION: u32 = 1;
pub const PLAN_FILE: &str = "plan.json";

/// The revision bump etcd's docs suggest for Kubernetes: far above anything a watcher saw.
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

/// `bump_revision` in plan.json: always present, 0 when the plan does not bump (the
/// interface's promise); read back as None.
mod bump_or_zero {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.unwrap_or(0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.filter(|n| *n > 0))
    }
}

/// One member of the restored cluster: the topology's settings plus the id etcd will give it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanMember {
    pub name: String,
    /// Lower-case hex without padding, as `etcdctl member list` prints it.
    pub member_id: MemberId,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub data_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_dir: Option<String>,
    pub host: String,
    pub runs_as: super::topology::RunsAs,
    pub unit: String,
    pub env_file: String,
    pub manifest: String,
    pub etcd_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_trusted_ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ca_file: Option<String>,
    /// The flags to start this member with after the restore (initial-cluster-state new):
    /// the one place the plan spells them. The runbook's `ETCD_*` lines, the static pod's
    /// flags and the snapshot-restore command read their values from here ([`Self::flag`]).
    pub etcd_flags: Vec<String>,
}

impl PlanMember {
    /// The value of `--NAME=VALUE` in [`Self::etcd_flags`] (`name` without the dashes).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.etcd_flags
            .iter()
            .find_map(|f| f.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('='))
    }
}

/// `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub format_version: u32,
    pub cluster_token: String,
    /// Hex, as etcd prints it.
    pub cluster_id: ClusterId,
    pub members: Vec<PlanMember>,
    /// `--initial-cluster` for every member: `name=url,...`.
    pub initial_cluster: String,
    /// Where the backup is read from (DEST of `--from`).
    pub from: String,
    pub backup_id: String,
    pub revision: i64,
    pub db_sha256: String,
    /// The old cluster's id (from the manifest), to tell old from new in `member list`.
    pub old_cluster_id: String,
    pub etcd_version_of_backup: String,
    /// `--bump-revision` for the restore (None: no bump), written as 0 when off.
    #[serde(default, with = "bump_or_zero")]
    pub bump_revision: Option<u64>,
    pub mark_compacted: bool,
    /// Restoring from a surviving member's db (`--from-data-dir`) instead of a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_db: Option<String>,
    /// etcd's snapshot hash check is skipped (a member's db has no SHA-256 trailer).
    #[serde(default)]
    pub hash_check_skipped: bool,
    pub warnings: Vec<String>,
    /// The restored cluster's starting revision, its hashkv there and its key count,
    /// computed offline from the data the writer produces (bump and compaction included;
    /// see [`super::predict`]). `restore check` compares the live cluster with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_hashkv: Option<u32>,
    /// The hashkv members answer until they have finished the compaction etcd resumes
    /// when it loads the restored database, when it differs from `expected_hashkv` (no
    /// key is live at the expected revision: etcd then hashes every entry still stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_hashkv_while_compacting: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_keys: Option<u64>,
    /// The old cluster's client URLs (from the backup's manifest), to check that every old
    /// member is stopped before the restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub old_client_urls: Vec<String>,
    /// Point-in-time recovery (`--to-revision`/`--to-time`): the revision the restore
    /// replays the captured changes to; absent for a plain restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<i64>,
    /// `--to-time` as given, when the revision was found by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_time: Option<String>,
    /// What the replay writes and the digest of its records ([`super::pitr`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<super::pitr::ReplayPlan>,
}

/// The snapshot a plan restores: a stored backup, or a surviving member's db.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub revision: i64,
    pub db_sha256: String,
    pub cluster_id: String,
    pub etcd_version: String,
    /// A member's `member/snap/db` (`--from-data-dir`): no SHA-256 trailer, so etcd's hash
    /// check is skipped.
    pub db_file: Option<String>,
    /// The old cluster's client URLs (empty when unknown).
    pub client_urls: Vec<String>,
}

impl Source {
    pub fn of_manifest(m: &Manifest) -> Source {
        Source {
            id: m.id.to_string(),
            revision: m.revision,
            db_sha256: m.db_sha256.clone(),
            cluster_id: m.cluster_id.to_string(),
            etcd_version: m.etcd_version.clone(),
            db_file: None,
            client_urls: m
                .members
                .iter()
                .flat_map(|mm| mm.client_urls.iter().cloned())
                .collect(),
        }
    }
}

/// What the plan is made from, besides the topology.
pub struct PlanInput<'a> {
    pub from: &'a str,
    pub manifest: &'a Source,
    /// Explicit bump (`--bump-revision N`), or None for no bump.
    pub bump_revision: Option<u64>,
    /// The snapshot holds `/registry/` keys.
    pub kubernetes: bool,
    /// The topology file's name, for problems.
    pub topology_file: &'a str,
}

/// A fresh token for `cluster_token = "generate"`: unique per plan, so restored members can
/// never be mistaken for (or join) members of an earlier restore.
fn generate_token(backup_id: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha1::new();
    h.update(backup_id.as_bytes());
    h.update(now.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    format!("lifeboat-restore-{}", &hex::encode(h.finalize())[..12])
}

/// `3.5.1` → (3, 5).
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim_start_matches('v').split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    Some((a, b))
}

/// Whether `etcdutl` of this version has `--bump-revision`/`--mark-compacted` (3.5.10+);
/// None when the topology only says "3.5".
pub fn supports_bump(version: &str) -> Option<bool> {
    let mut it = version.trim_start_matches('v').split('.');
    let (a, b) = (it.next()?, it.next()?);
    if a != "3" {
        return Some(a.parse::<u32>().ok()? > 3);
    }
    match b {
        "4" => Some(false),
        "5" => it.next()?.parse::<u32>().ok().map(|p| p >= 10),
        _ => Some(true),
    }
}

/// The bump is lifeboat's writer's job, whatever the nodes run; only etcd's own tool needs
/// 3.5.10+. The members whose tool cannot do it, said once.
fn bump_needs_lifeboat(t: &Topology, bump: Option<u64>) -> Option<String> {
    bump?;
    let old: Vec<String> = t
        .members
        .iter()
        .filter(|m| supports_bump(&m.etcd_version) == Some(false))
        .map(|m| format!("{} (etcd {})", m.name, m.etcd_version))
        .collect();
    (!old.is_empty()).then(|| format!(
        "the plan bumps the revision, which etcdutl before 3.5.10 cannot: {} need lifeboat installed (its writer does the bump); their scripts refuse the etcdutl fallback",
        old.join(", ")
    ))
}

/// A member's start flags ([`PlanMember::etcd_flags`]), from its topology entry, the
/// plan's `--initial-cluster` and token.
fn etcd_flags(m: &Member, initial: &str, token: &str) -> Vec<String> {
    let mut f = vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", m.data_dir),
    ];
    if let Some(w) = &m.wal_dir {
        f.push(format!("--wal-dir={w}"));
    }
    f.extend([
        format!("--listen-peer-urls={}", m.peer_urls.join(",")),
        format!("--initial-advertise-peer-urls={}", m.peer_urls.join(",")),
        format!("--listen-client-urls={}", m.client_urls.join(",")),
        format!("--advertise-client-urls={}", m.client_urls.join(",")),
        format!("--initial-cluster={initial}"),
        format!("--initial-cluster-token={token}"),
        "--initial-cluster-state=new".to_string(),
    ]);
    let files = [
        ("--peer-cert-file", &m.peer_cert_file),
        ("--peer-key-file", &m.peer_key_file),
        ("--peer-trusted-ca-file", &m.peer_trusted_ca_file),
        ("--cert-file", &m.cert_file),
        ("--key-file", &m.key_file),
        ("--trusted-ca-file", &m.trusted_ca_file),
    ];
    for (flag, v) in files {
        if let Some(v) = v {
            f.push(format!("{flag}={v}"));
        }
    }
    if m.peer_trusted_ca_file.is_some() {
        f.push("--peer-client-cert-auth".into());
    }
    if m.trusted_ca_file.is_some() {
        f.push("--client-cert-auth".into());
    }
    f
}

/// Check the topology against the backup and compute the plan. Nothing is written.
pub fn make_plan(t: &Topology, input: &PlanInput<'_>) -> Result<Plan> {
    let m = input.manifest;
    let mut problems: Vec<Problem> = Vec::new();
    let backup_v = major_minor(&m.etcd_version);
    for (i, mem) in t.members.iter().enumerate() {
        // A version inherited from the top-level key is reported once, at that key.
        let (key, line) = match mem.etcd_version_line {
            Some(l) => (format!("member[{i}].etcd_version"), l),
            None => ("etcd_version".to_string(), t.etcd_version_line),
        };
        let mut say = |message: String| {
            if !problems
                .iter()
                .any(|p| p.key == key && p.message == message)
            {
                problems.push(Problem {
                    key: key.clone(),
                    line,
                    message,
                });
            }
        };
        let target = major_minor(&mem.etcd_version);
        if let (Some(b), Some(tv)) = (backup_v, target) {
            if tv < b {
                say(format!(
                    "etcd {} cannot restore backup {} taken from etcd {}: use {}.{} or later",
                    mem.etcd_version, m.id, m.etcd_version, b.0, b.1
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems_error(input.topology_file, &problems));
    }
    let token = if t.cluster_token == "generate" {
        generate_token(&m.id)
    } else {
        t.cluster_token.clone()
    };
    let initial: Vec<String> = t
        .members
        .iter()
        .flat_map(|mem| {
            mem.peer_urls
                .iter()
                .map(move |u| format!("{}={u}", mem.name))
        })
        .collect();
    let initial = initial.join(",");
    let mut ids_ = Vec::new();
    let mut members = Vec::new();
    for mem in &t.members {
        let id = ids::member_id(&mem.peer_urls, &token)?;
        ids_.push(id);
        members.push(PlanMember {
            name: mem.name.clone(),
            member_id: MemberId(id),
            peer_urls: mem.peer_urls.clone(),
            client_urls: mem.client_urls.clone(),
            data_dir: mem.data_dir.clone(),
            wal_dir: mem.wal_dir.clone(),
            host: mem.host.clone(),
            runs_as: mem.runs_as,
            unit: mem.unit.clone(),
            env_file: mem.env_file.clone(),
            manifest: mem.manifest.clone(),
            etcd_version: mem.etcd_version.clone(),
            peer_cert_file: mem.peer_cert_file.clone(),
            peer_key_file: mem.peer_key_file.clone(),
            peer_trusted_ca_file: mem.peer_trusted_ca_file.clone(),
            cert_file: mem.cert_file.clone(),
            key_file: mem.key_file.clone(),
            trusted_ca_file: mem.trusted_ca_file.clone(),
            etcd_flags: etcd_flags(mem, &initial, &token),
        });
    }
    let mut warnings = t.warnings.clone();
    if let Some(f) = &m.db_file {
        warnings.push(format!(
            "restoring from the member db {f}, not a verified backup: etcd's snapshot hash check is skipped (a member's db has no SHA-256 trailer); lifeboat checked its pages and records its SHA-256 in plan.json"
        ));
    }
    warnings.extend(bump_needs_lifeboat(t, input.bump_revision));
    if input.bump_revision.is_none() && input.kubernetes {
        warnings.push(
            "the backup holds Kubernetes objects (/registry/ keys) and the plan does not bump the revision: kube-apiserver watchers may keep serving objects newer than the backup".into(),
        );
    }
    Ok(Plan {
        format: PLAN_FORMAT.into(),
        format_version: PLAN_VERSION,
        cluster_token: token,
        cluster_id: ClusterId(ids::cluster_id(&ids_)),
        members,
        initial_cluster: initial,
        from: input.from.to_string(),
        backup_id: m.id.clone(),
        revision: m.revision,
        db_sha256: m.db_sha256.clone(),
        old_cluster_id: m.cluster_id.clone(),
        etcd_version_of_backup: m.etcd_version.clone(),
        bump_revision: input.bump_revision,
        mark_compacted: input.bump_revision.is_some(),
        source_db: m.db_file.clone(),
        hash_check_skipped: m.db_file.is_some(),
        warnings,
        expected_revision: None,
        expected_hashkv: None,
        expected_hashkv_while_compacting: None,
        expected_keys: None,
        old_client_urls: m.client_urls.clone(),
        to_revision: None,
        to_time: None,
        replay: None,
    })
}

impl Plan {
    /// Read `DIR/plan.json`; a missing or foreign file is a usage error naming `--plan`.
    pub fn load(dir: &Path) -> Result<Plan> {
        let path = dir.join(PLAN_FILE);
        let bytes = std::fs::read(&path).at(&path)?;
        let p: Plan = serde_json::from_slice(&bytes).map_err(|e| Error::Flag {
            flag: "--plan".into(),
            message: format!(
                "{}: not a lifeboat restore plan ({e}); make one with `lifeboat restore plan`",
                path.display()
            ),
        })?;
        if p.format != PLAN_FORMAT || p.format_version > PLAN_VERSION {
            return Err(Error::Flag {
                flag: "--plan".into(),
                message: format!(
                    "{}: format {} version {} is not one this lifeboat reads (upgrade lifeboat)",
                    path.display(),
                    p.format,
                    p.format_version
                ),
            });
        }
        Ok(p)
    }

    pub fn member(&self, name: &str) -> Result<&PlanMember> {
        self.members.iter().find(|m| m.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
            Error::Flag {
                flag: "--node".into(),
                message: format!(
                    "no member {name:?} in the plan (members: {})",
                    names.join(", ")
                ),
            }
        })
    }
}

/// Write plan.json, RUNBOOK.md and one script per node into `out`, each atomically. A plan
/// dir that already holds a plan is refused unless `overwrite`: an operator half-way
/// through a restore must not have its plan (and token) replaced under them.
pub fn write_plan(plan: &Plan, out: &Path, overwrite: bool) -> Result<Vec<PathBuf>> {
    write_plan_with(plan, out, overwrite, &[])
}

/// [`write_plan`] with `extra` files (name, bytes) that plan.json names, written first.
pub fn write_plan_with(
    plan: &Plan,
    out: &Path,
    overwrite: bool,
    extra: &[(&str, &[u8])],
) -> Result<Vec<PathBuf>> {
    let existing = out.join(PLAN_FILE);
    if existing.exists() && !overwrite {
        return Err(Error::Flag {
            flag: "--out".into(),
            message: format!(
                "{} already holds a plan; choose another --out, or pass --force to replace it",
                out.display()
            ),
        });
    }
    std::fs::create_dir_all(out).at(out)?;
    let json = plan_json(plan)?;
    let id = super::guard::PlanId::of(plan, json.as_bytes());
    let mut files: Vec<(String, Vec<u8>, bool)> = extra
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec(), false))
        .collect();
    files.push((PLAN_FILE.to_string(), json.into_bytes(), false));
    files.push((
        "RUNBOOK.md".into(),
        super::runbook::runbook(plan).into_bytes(),
        false,
    ));
    for m in &plan.members {
        files.push((
            format!("{}.sh", m.name),
            super::runbook::node_script(plan, m, &id).into_bytes(),
            true,
        ));
    }
    let mut written = Vec::new();
    for (name, bytes, exec) in files {
        let path = out.join(&name);
        let tmp = out.join(format!(".{name}.partial"));
        std::fs::write(&tmp, &bytes).at(&tmp)?;
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).at(&tmp)?;
        }
        std::fs::rename(&tmp, &path).at(&path)?;
        written.push(path);
    }
    Ok(written)
}

pub fn plan_json(plan: &Plan) -> Result<String> {
    let mut s = serde_json::to_string_pretty(plan)
        .map_err(|e| Error::Internal(format!("cannot encode the plan: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// The source for `--from-data-dir PATH`: a data dir (its `member/snap/db`) or a db file,
/// which must pass every page check (exit 3 otherwise): a restore from a damaged db would
/// spread the damage to every member. `access` decrypts an age-encrypted db file.
pub fn source_of_db(path: &Path, access: &crate::catalog::Access) -> Result<Source> {
    let file = if path.is_dir() {
        let dirs = crate::member::Dirs::resolve(path, None);
        if let Some(h) = crate::member::holder::holder(&dirs, false) {
            return Err(live_source(path, &h));
        }
        dirs.snap_dir.join("db")
    } else {
        if let Some(h) = crate::member::holder::held_file(path) {
            return Err(live_source(path, &h));
        }
        path.to_path_buf()
    };
    let name = file.display().to_string();
    let input = crate::offline::open_input(
        &name,
        &crate::offline::OpenOptions {
            force: false,
            access: access.clone(),
        },
    )?;
    let ins = crate::offline::inspect(
        &input,
        &crate::format::etcd::report::ReportOptions {
            hashkv_rev: 0,
            k8s: false,
            by_namespace: false,
            top: 0,
            max_problems: 10,
        },
    );
    if !ins.report.ok {
        let why: Vec<String> = ins
            .report
            .problems
            .iter()
            .map(|p| p.message.clone())
            .collect();
        return Err(Error::integrity(
            &name,
            format!("damaged, not a restore source: {}; try the next-best member (lifeboat check-member)", why.join("; ")),
        ));
    }
    let reader = crate::io::FileReader::open(&file).at(&file)?;
    let sha = crate::io::sha256_at(&reader).at(&file)?;
    let sum = crate::format::etcd::summary(&reader)
        .map_err(|e| Error::integrity(&name, e.to_string()))?;
    Ok(Source {
        id: format!("data-dir:{name}"),
        revision: sum.revision,
        db_sha256: hex::encode(sha),
        cluster_id: "unknown".into(),
        etcd_version: sum.cluster_version.unwrap_or_else(|| "3.4".into()),
        db_file: Some(name),
        client_urls: Vec::new(),
    })
}

/// A restore source a running etcd holds: its db changes while it is read, and the member
/// is alive, so the cluster may not need a restore at all (exit 1).
fn live_source(path: &Path, h: &crate::member::holder::Holder) -> Error {
    Error::Refused(format!(
        "{} is a live member's data: {h} on {}; {}, then plan again; or, if that member serves, take a backup from it instead (`lifeboat backup`, then `restore plan --from DEST`)",
        path.display(),
        h.path.display(),
        h.stop_hint()
    ))
}

/// `DEST[:ID]` → (DEST, ID); the id defaults to `latest`. A `:` starts an id only when no `/`
/// follows it, so `s3://bucket/prefix` and plain paths stay whole.
pub fn split_from(spec: &str) -> (&str, &str) {
    match spec.rsplit_once(':') {
        Some((dest, id)) if !id.is_empty() && !id.contains('/') && !dest.is_empty() => (dest, id),
        _ => (spec, "latest"),
    }
}

mod kubernetes;
pub use kubernetes::{db_holds_kubernetes, KubernetesKeys};

#[cfg(test)]
mod tests;
