//! lifeboat on etcd 3.6.16 and 3.7.3 (built from the released Go modules by
//! scripts/etcd-go.sh): one source cluster per version, shared by every check.
//! Backup records the storage version and fetches a file the version's own etcdutl restores;
//! `inspect` equals that etcdutl's `snapshot status` and the live `endpoint hashkv` (also at
//! a compaction on a tombstone); the native restore writer's files equal that etcdutl's
//! (WAL byte for byte, db entry by entry, .snap up to 3.6's map-order creation indexes) and
//! boot on that version with 1 and 3 members, with and without the revision bump.
//! The same sources are backed up to S3 (s3s-fs) with age encryption, verified and fetched;
//! `restore test` boots the backup's own release; `restore plan` + `apply` take a 3.5.16
//! backup onto 3.6.16 and a 3.6.16 backup onto 3.7.3. One 3-member cluster is upgraded
//! member by member 3.5.16 → 3.6.16 → 3.7.3 under `lifeboat status`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::native::{BootMember, Booted};
use crate::common::restore::{apply_all, make_plan, restore_check, start_from_plan};
use crate::common::store::backup_json;
use crate::common::versions::{etcd36, etcd37};
use crate::common::*;
use lifeboat::format::bolt::Db;
use lifeboat::restore::native::{
    write_member_dirs_styled, MemberSpec, RestoreSpec, RestoreStyle, WrittenMember,
};

mod check_member;
mod native;
mod upgrade;

/// What the source member served when the backup was taken, and the backup itself.
struct Source {
    bins: Bins,
    /// Fetched from the lifeboat backup: db + SHA-256 trailer.
    snap: PathBuf,
    manifest: serde_json::Value,
    kvs: serde_json::Value,
    revision: i64,
    hashkv: u64,
    compact_rev: i64,
    /// `endpoint hashkv --rev=<compaction>` after a restart.
    hashkv_at_compact: u64,
    member_id: u64,
    /// A copy of the stopped member's data dir.
    member_dir: PathBuf,
    /// The same data backed up to S3 (s3s-fs) encrypted with age, verified and fetched.
    #[cfg(feature = "s3")]
    s3: S3Backup,
}

#[cfg(feature = "s3")]
struct S3Backup {
    manifest: serde_json::Value,
    /// `verify` with the identity, as JSON.
    verified: serde_json::Value,
    /// `fetch --identity`: the decrypted db + trailer.
    fetched: PathBuf,
}

/// Backup to S3 on s3s-fs, encrypted to a fresh age key, then `verify` and `fetch` with
/// the identity. The S3 server lives only for this.
#[cfg(feature = "s3")]
fn s3_encrypted(c: &Cluster, dir: &Path) -> S3Backup {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let identity = dir.join("ops.key");
    std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let identity = identity.to_str().unwrap();
    let public = id.to_public().to_string();
    let s3 = common::s3::S3Server::start(&["backups"]);
    let dest = "s3://backups/etcd";
    let mut a: Vec<String> = [
        "backup",
        "--to",
        dest,
        "--encrypt-to",
        &public,
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(c.conn_args());
    let o = s3.lifeboat(&a);
    assert_exit(&o, 0);
    let manifest = json(&o);
    let id = manifest["id"].as_str().unwrap().to_string();
    let o = s3.lifeboat([
        "verify",
        "--from",
        dest,
        &id,
        "--identity",
        identity,
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let verified = json(&o);
    let fetched = dir.join("s3-fetched.db");
    let o = s3.lifeboat([
        "fetch",
        "--from",
        dest,
        &id,
        "--identity",
        identity,
        "--out",
        fetched.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    S3Backup {
        manifest,
        verified,
        fetched,
    }
}

fn build_source(bins: Bins) -> Source {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("etcd-versions-{}", bins.version));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Cluster::single(
        &bins,
        Opts {
            // Raft snapshots early: both still write v2 .snap files with them.
            snapshot_count: Some(10),
            ..Opts::default()
        },
    );
    for i in 0..20 {
        c.put(&format!("/n/{i:02}"), &format!("value-{i}"));
    }
    // Enough data that `key` spans pages (the bump appends along the rightmost path).
    c.fill("/fill/", 300, 200);
    c.put("/n/03", "again");
    c.ctl_ok(&["del", "/n/07"]);
    // Compact at the tombstone's own revision: 3.5.16+ keeps that tombstone out of hashkv.
    let rev_of = |c: &Cluster| -> i64 {
        let v: serde_json::Value =
            serde_json::from_str(&c.ctl_ok(&["get", "/n/00", "-w", "json"])).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    let compact_rev = rev_of(&c);
    c.ctl_ok(&["compact", &compact_rev.to_string()]);
    c.put("/n/03", "and again");
    c.ctl_ok(&["del", "/n/1", "--prefix"]);
    let hk = |c: &Cluster, rev: Option<i64>| -> u64 {
        let mut args = vec!["endpoint", "hashkv", "-w", "json"];
        let r = rev.map(|r| format!("--rev={r}"));
        if let Some(r) = &r {
            args.push(r);
        }
        let v: serde_json::Value = serde_json::from_str(&c.ctl_ok(&args)).unwrap();
        v[0]["HashKV"]["hash"].as_u64().unwrap()
    };
    let get: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["get", "", "--from-key", "-w", "json"])).unwrap();
    let ml: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let dest = dir.join("backups");
    let manifest = backup_json(&c, &dest, &[]);
    #[cfg(feature = "s3")]
    let s3 = s3_encrypted(&c, &dir);
    let o = run_lifeboat(["verify", "--from", dest.to_str().unwrap(), "latest"]);
    assert_exit(&o, 0);
    let snap = dir.join("fetched.db");
    let o = run_lifeboat([
        "fetch",
        "--from",
        dest.to_str().unwrap(),
        "latest",
        "--out",
        snap.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let hashkv = hk(&c, None);
    // At exactly the compaction revision, the member that compacted answers with the hash it
    // kept while compacting (over the revisions before it, tombstone included); after a
    // restart (or a restore) 3.6+ computes it from the store, where the tombstone at the
    // compaction is gone. An offline hashkv can only be the latter.
    let cached = hk(&c, Some(compact_rev));
    c.stop(0);
    c.restart(0);
    c.wait_healthy(Duration::from_secs(60));
    let hashkv_at_compact = hk(&c, Some(compact_rev));
    eprintln!(
        "etcd {}: hashkv at the compaction {compact_rev}: {cached} kept at compaction, {hashkv_at_compact} after a restart",
        bins.version
    );
    c.stop(0);
    let member_dir = dir.join("member-copy");
    copy_dir(c.data_dir(0), &member_dir);
    Source {
        member_dir,
        snap,
        manifest,
        kvs: get["kvs"].clone(),
        revision: get["header"]["revision"].as_i64().unwrap(),
        hashkv,
        compact_rev,
        hashkv_at_compact,
        member_id: ml["members"][0]["ID"].as_u64().unwrap(),
        bins,
        #[cfg(feature = "s3")]
        s3,
    }
}

fn source(version: &str) -> &'static Source {
    static S36: OnceLock<Source> = OnceLock::new();
    static S37: OnceLock<Source> = OnceLock::new();
    static S35: OnceLock<Source> = OnceLock::new();
    match version {
        "3.5.16" => S35.get_or_init(|| build_source(common::native::etcd3516())),
        "3.6" => S36.get_or_init(|| build_source(etcd36())),
        _ => S37.get_or_init(|| build_source(etcd37())),
    }
}

fn storage_version(bins: &Bins) -> &'static str {
    if bins.version.starts_with("3.6") {
        "3.6.0"
    } else {
        "3.7.0"
    }
}

fn etcdutl(bins: &Bins, args: &[&str]) -> std::process::Output {
    let o = Command::new(bins.etcdutl.as_ref().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "etcdutl {} {args:?}: {}",
        bins.version,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Backup from the leader records `SnapshotResponse.version`; the fetched file restores
/// with that version's own etcdutl (hash checked).
fn backup_and_fetch(version: &str) {
    let s = source(version);
    let m = &s.manifest;
    assert_eq!(m["storage_version"], storage_version(&s.bins), "{m:#}");
    assert_eq!(m["etcd_version"], s.bins.version, "{m:#}");
    assert_eq!(m["revision"].as_i64(), Some(s.revision));
    assert_eq!(m["hashkv"].as_u64(), Some(s.hashkv));
    let tmp = TempDir::new().unwrap();
    let d = tmp.path().join("r");
    etcdutl(
        &s.bins,
        &[
            "snapshot",
            "restore",
            s.snap.to_str().unwrap(),
            "--data-dir",
            d.to_str().unwrap(),
        ],
    );
    assert!(d.join("member/snap/db").is_file());
}

#[test]
fn backup_records_storage_version_and_fetch_restores_3_6() {
    backup_and_fetch("3.6");
}

#[test]
fn backup_records_storage_version_and_fetch_restores_3_7() {
    backup_and_fetch("3.7");
}

/// The same from S3 with age encryption: the object is ciphertext, `verify` passes with the
/// identity, and the fetched (decrypted) file is the local backup's data and restores with
/// that version's own etcdutl.
#[cfg(feature = "s3")]
fn s3_encrypted_backup(version: &str) {
    let s = source(version);
    let (m, what) = (&s.s3.manifest, format!("etcd {}", s.bins.version));
    assert_eq!(m["encryption"], "age", "{what}: {m:#}");
    assert_eq!(
        m["storage_version"],
        storage_version(&s.bins),
        "{what}: {m:#}"
    );
    assert_eq!(m["etcd_version"], s.bins.version, "{what}");
    assert_eq!(m["revision"], s.manifest["revision"], "{what}");
    assert_eq!(m["hashkv"], s.manifest["hashkv"], "{what}");
    let v = &s.s3.verified;
    assert_eq!(
        (&v["id"], &v["ok"]),
        (&m["id"], &true.into()),
        "{what}: {v:#}"
    );
    let o = run_lifeboat(["inspect", "-o", "json", s.s3.fetched.to_str().unwrap()]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["revision"].as_i64(), Some(s.revision), "{what}");
    assert_eq!(r["hashkv"].as_u64(), Some(s.hashkv), "{what}");
    assert_eq!(r["storage_version"], storage_version(&s.bins), "{what}");
    let tmp = TempDir::new().unwrap();
    let d = tmp.path().join("r");
    etcdutl(
        &s.bins,
        &[
            "snapshot",
            "restore",
            s.s3.fetched.to_str().unwrap(),
            "--data-dir",
            d.to_str().unwrap(),
        ],
    );
    assert!(d.join("member/snap/db").is_file(), "{what}");
}

#[cfg(feature = "s3")]
#[test]
fn s3_encrypted_backup_verifies_and_fetch_restores_3_6() {
    s3_encrypted_backup("3.6");
}

#[cfg(feature = "s3")]
#[test]
fn s3_encrypted_backup_verifies_and_fetch_restores_3_7() {
    s3_encrypted_backup("3.7");
}

/// `restore test` without `--etcd` boots the release the backup was taken from (3.6.16 from
/// the etcd cache, not PATH's etcd 3.4.23) and reports it; `--etcd` boots another (3.7.3:
/// an upgrade, which it names).
#[test]
fn restore_test_boots_the_backups_release_3_6() {
    let s = source("3.6");
    let dest = s.snap.parent().unwrap().join("backups");
    let cache = s.bins.etcd.parent().unwrap().parent().unwrap();
    let test = |extra: &[&str]| {
        let o = Command::new(lifeboat())
            .args(["restore", "test", "--from", dest.to_str().unwrap()])
            .args(extra)
            .env("LIFEBOAT_ETCD_CACHE", cache)
            .env_remove("ETCDCTL_ENDPOINTS")
            .output()
            .unwrap();
        assert_exit(&o, 0);
        o
    };
    let o = test(&["-o", "json"]);
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["etcd_version"], "3.6.16", "{r:#}");
    assert_eq!(r["backup_etcd_version"], "3.6.16", "{r:#}");
    assert_eq!(r["etcd_path"], s.bins.etcd.to_str().unwrap(), "{r:#}");
    assert_eq!(r["hashkv"], r["hashkv_expected"], "{r:#}");
    let e37 = etcd37();
    let o = test(&["--etcd", e37.etcd.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(
        text.contains("etcd 3.7.3 started") && text.contains("backed up from etcd 3.6.16"),
        "{text}"
    );
}

/// `inspect` against etcdutl's `snapshot status` and the live hashkv.
fn inspect_matches(version: &str) {
    let s = source(version);
    let st = etcdutl(
        &s.bins,
        &["snapshot", "status", "-w", "json", s.snap.to_str().unwrap()],
    );
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let o = run_lifeboat(["inspect", "-o", "json", s.snap.to_str().unwrap()]);
    assert_exit(&o, 0);
    let r = json(&o);
    let what = format!("etcd {}", s.bins.version);
    assert_eq!(r["revision"], st["revision"], "{what}");
    assert_eq!(r["etcdutl_hash"], st["hash"], "{what}");
    assert_eq!(r["db_size"], st["totalSize"], "{what}");
    // 3.6 counts live user keys, not entries in all buckets.
    assert_eq!(r["live_keys"], st["totalKey"], "{what}");
    assert_eq!(r["storage_version"], st["version"], "{what}");
    assert_eq!(r["storage_version"], storage_version(&s.bins), "{what}");
    assert_eq!(r["hashkv"].as_u64(), Some(s.hashkv), "{what}");
    assert_eq!(
        r["compact_revision"].as_i64(),
        Some(s.compact_rev),
        "{what}"
    );
    let ids: Vec<u64> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| u64::from_str_radix(m["id"].as_str().unwrap(), 16).unwrap())
        .collect();
    assert_eq!(ids, vec![s.member_id], "{what}: members from the db");
    let o = run_lifeboat([
        "inspect",
        "-o",
        "json",
        "--rev",
        &s.compact_rev.to_string(),
        s.snap.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        json(&o)["hashkv"].as_u64(),
        Some(s.hashkv_at_compact),
        "{what}: hashkv at the compaction (a tombstone), live after a restart"
    );
}

#[test]
fn inspect_matches_etcdutl_and_live_hashkv_3_6() {
    inspect_matches("3.6");
}

#[test]
fn inspect_matches_etcdutl_and_live_hashkv_3_7() {
    inspect_matches("3.7");
}

fn members(n: usize, ports: bool) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let port = if ports { free_port() } else { 2380 + i as u16 };
            (format!("m{i}"), format!("http://127.0.0.1:{port}"))
        })
        .collect()
}

fn native(
    snap: &Path,
    ms: &[(String, String)],
    token: &str,
    bump: Option<u64>,
    out: &Path,
    style: RestoreStyle,
) -> Vec<WrittenMember> {
    let bytes = std::fs::read(snap).unwrap();
    let (db, trailer) = bytes.split_at(bytes.len() - 32);
    let spec = RestoreSpec {
        members: ms
            .iter()
            .map(|(n, u)| MemberSpec {
                name: n.clone(),
                peer_urls: vec![u.clone()],
            })
            .collect(),
        token: token.into(),
        bump_revision: bump,
        mark_compacted: bump.is_some(),
    };
    let targets: Vec<(String, PathBuf, Option<PathBuf>)> = ms
        .iter()
        .map(|(n, _)| (n.clone(), out.join(n), None))
        .collect();
    write_member_dirs_styled(
        &db.to_vec(),
        Some(trailer.try_into().unwrap()),
        &spec,
        &targets,
        style,
    )
    .unwrap()
}

type Buckets = std::collections::BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

fn buckets(db: &Path) -> Buckets {
    let bytes = std::fs::read(db).unwrap();
    let db = Db::open(&bytes).unwrap();
    let mut out = Buckets::new();
    for name in db.bucket_names().unwrap() {
        let b = db.bucket(&name).unwrap().unwrap();
        let mut c = b.cursor();
        let mut v = Vec::new();
        while let Some(e) = c.next().unwrap() {
            v.push((e.key.to_vec(), e.value.to_vec()));
        }
        out.insert(name, v);
    }
    out
}

/// Protobuf fields of one message (varints and byte strings only, as in these files).
fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut s) = (0u64, 0);
        loop {
            let c = b[0];
            *b = &b[1..];
            v |= u64::from(c & 0x7f) << s;
            s += 7;
            if c < 0x80 {
                return v;
            }
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = varint(&mut b);
        if tag & 7 == 0 {
            out.push((tag >> 3, Ok(varint(&mut b))));
        } else {
            let n = varint(&mut b) as usize;
            out.push((tag >> 3, Err(b[..n].to_vec())));
            b = &b[n..];
        }
    }
    out
}

/// A .snap's v2 store JSON with creation indexes zeroed and events sorted (3.6+ adds the
/// members in Go map order), and its raft metadata bytes.
fn snap_normalized(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let file = fields(&std::fs::read(path).unwrap());
    let Err(snap) = &file[1].1 else {
        panic!("snap data")
    };
    let f = fields(snap);
    let (Err(data), Err(meta)) = (&f[0].1, &f[1].1) else {
        panic!("raftpb.Snapshot")
    };
    fn zero(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k.eq_ignore_ascii_case("createdindex")
                        || k.eq_ignore_ascii_case("modifiedindex")
                    {
                        *x = 0.into();
                    } else {
                        zero(x);
                    }
                }
            }
            serde_json::Value::Array(a) => {
                a.iter_mut().for_each(zero);
                a.sort_by_key(|x| x.to_string());
            }
            _ => {}
        }
    }
    let mut j: serde_json::Value = serde_json::from_slice(data).unwrap();
    zero(&mut j);
    (j, meta.clone())
}
