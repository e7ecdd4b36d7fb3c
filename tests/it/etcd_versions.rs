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

/// The native writer in the version's style against that version's etcdutl.
fn equivalent(version: &str, n: usize, bump: Option<u64>) {
    let s = source(version);
    let style = RestoreStyle::for_version(s.bins.version);
    let tmp = TempDir::new().unwrap();
    let ms = members(n, false);
    let token = "equivalence-token";
    let written = native(&s.snap, &ms, token, bump, &tmp.path().join("native"), style);
    let cluster: Vec<String> = ms.iter().map(|(n, u)| format!("{n}={u}")).collect();
    for (i, (name, url)) in ms.iter().enumerate() {
        let theirs = tmp.path().join("etcdutl").join(name);
        let mut args = vec![
            "snapshot".to_string(),
            "restore".into(),
            s.snap.display().to_string(),
            format!("--name={name}"),
            format!("--initial-cluster={}", cluster.join(",")),
            format!("--initial-cluster-token={token}"),
            format!("--initial-advertise-peer-urls={url}"),
            format!("--data-dir={}", theirs.display()),
        ];
        if let Some(b) = bump {
            args.push(format!("--bump-revision={b}"));
            args.push("--mark-compacted".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdutl(&s.bins, &args);
        let ours = &written[i].data_dir;
        let what = format!("etcd {} n={n} bump={bump:?} {name}", s.bins.version);
        let wal = "member/wal/0000000000000000-0000000000000000.wal";
        assert!(
            std::fs::read(ours.join(wal)).unwrap() == std::fs::read(theirs.join(wal)).unwrap(),
            "{what}: WAL differs"
        );
        let snap = format!("member/snap/0000000000000001-{n:016x}.snap");
        if n == 1 {
            assert!(
                std::fs::read(ours.join(&snap)).unwrap()
                    == std::fs::read(theirs.join(&snap)).unwrap(),
                "{what}: .snap differs"
            );
        } else {
            assert_eq!(
                snap_normalized(&ours.join(&snap)),
                snap_normalized(&theirs.join(&snap)),
                "{what}: .snap"
            );
        }
        let (x, y) = (
            buckets(&ours.join("member/snap/db")),
            buckets(&theirs.join("member/snap/db")),
        );
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (b, ex) in &x {
            assert_eq!(ex, &y[b], "{what}: bucket {}", String::from_utf8_lossy(b));
        }
        let st = etcdutl(
            &s.bins,
            &[
                "snapshot",
                "status",
                "-w",
                "json",
                ours.join("member/snap/db").to_str().unwrap(),
            ],
        );
        let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        assert_eq!(st["version"], storage_version(&s.bins), "{what}");
    }
}

#[test]
fn native_writer_equals_etcdutl_3_6() {
    equivalent("3.6", 3, None);
    equivalent("3.6", 1, None);
    equivalent("3.6", 1, Some(1000));
}

#[test]
fn native_writer_equals_etcdutl_3_7() {
    equivalent("3.7", 3, None);
    equivalent("3.7", 1, None);
    equivalent("3.7", 1, Some(1000));
}

/// Restore `src` natively in `on`'s style and boot `on` with `n` members: every key and
/// revision, hashkv equal to the backup's (without a bump), ids as written.
fn boots(src: &Source, on: &Bins, n: usize, bump: Option<u64>) {
    let tmp = TempDir::new().unwrap();
    let ms = members(n, true);
    let style = RestoreStyle::for_version(on.version);
    let written = native(&src.snap, &ms, "boot-token", bump, tmp.path(), style);
    let boot: Vec<BootMember> = written
        .iter()
        .zip(&ms)
        .map(|(w, (name, url))| BootMember {
            name: name.clone(),
            data_dir: w.data_dir.clone(),
            peer_url: url.clone(),
        })
        .collect();
    let c = Booted::start(on, on, &boot, Duration::from_secs(90));
    let what = format!(
        "{} backup on etcd {} n={n} bump={bump:?}",
        src.bins.version, on.version
    );
    for ep in &c.clients {
        let o = Command::new(&on.etcdctl)
            .arg(format!("--endpoints={ep}"))
            .args(["get", "", "--from-key", "-w", "json", "--consistency=s"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(got["kvs"], src.kvs, "{what} at {ep}");
        let want = src.revision + bump.map(|b| b as i64).unwrap_or(0);
        assert_eq!(got["header"]["revision"].as_i64(), Some(want), "{what}");
    }
    let hk = c.ctl(&["endpoint", "hashkv", "-w", "json"]);
    assert!(
        hk.status.success(),
        "{}",
        String::from_utf8_lossy(&hk.stderr)
    );
    let hk: serde_json::Value = serde_json::from_slice(&hk.stdout).unwrap();
    let hashes: Vec<u64> = hk
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["HashKV"]["hash"].as_u64().unwrap())
        .collect();
    assert_eq!(hashes.len(), n);
    if bump.is_none() {
        assert!(
            hashes.iter().all(|h| *h == src.hashkv),
            "{what}: {hashes:?} vs {}",
            src.hashkv
        );
    } else {
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{what}: {hashes:?}");
    }
    let ml = c.ctl(&["member", "list", "-w", "json"]);
    let ml: serde_json::Value = serde_json::from_slice(&ml.stdout).unwrap();
    let mut ids: Vec<u64> = ml["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ID"].as_u64().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<u64> = written.iter().map(|w| w.member_id).collect();
    want.sort();
    assert_eq!(ids, want, "{what}");
}

#[test]
fn native_restore_boots_on_3_6() {
    let s = source("3.6");
    boots(s, &s.bins, 1, None);
    boots(s, &s.bins, 3, Some(1000));
}

#[test]
fn native_restore_boots_on_3_7() {
    let s = source("3.7");
    boots(s, &s.bins, 1, None);
    boots(s, &s.bins, 3, Some(1000));
}

/// The upgrade path a Kubernetes upgrade gone wrong needs, as an operator runs it: `restore
/// plan` from the backup with a topology naming the newer release, `restore apply` on every
/// node (the native writer), the members started with the plan's `etcd_flags` alone; then
/// every key and revision on every member, hashkv (equal to the backup's without a bump,
/// one value on all members with it), and `restore check --plan`.
fn upgrade(src: &Source, on: &Bins, bump: Option<u64>) {
    let dest = src.snap.parent().unwrap().join("backups");
    let tmp = TempDir::new().unwrap();
    let mut t = format!(
        "cluster_token = \"generate\"\netcd_version = \"{}\"\n",
        on.version
    );
    for i in 0..3 {
        t.push_str(&format!(
            "\n[[member]]\nname = \"r{i}\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            free_port(),
            free_port(),
            tmp.path().join(format!("r{i}")).display()
        ));
    }
    let topo = tmp.path().join("topology.toml");
    std::fs::write(&topo, t).unwrap();
    let plan_dir = tmp.path().join("plan");
    let flag = bump.map_or("--no-bump-revision".to_string(), |b| {
        format!("--bump-revision={b}")
    });
    let plan = make_plan(&dest, &topo, &plan_dir, &[&flag]);
    apply_all(&plan_dir, &plan);
    let c = start_from_plan(on, &plan);
    let what = format!(
        "{} backup planned and applied onto etcd {} bump={bump:?}",
        src.bins.version, on.version
    );
    for m in &c.members {
        let o = c.ctl_at(
            &m.client_url,
            &["get", "", "--from-key", "-w", "json", "--consistency=s"],
        );
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(got["kvs"], src.kvs, "{what} at {}", m.client_url);
        let want = src.revision + bump.map_or(0, |b| b as i64);
        assert_eq!(got["header"]["revision"].as_i64(), Some(want), "{what}");
    }
    let hk: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["endpoint", "hashkv", "-w", "json"])).unwrap();
    let hashes: Vec<u64> = hk
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["HashKV"]["hash"].as_u64().unwrap())
        .collect();
    assert_eq!(hashes.len(), 3, "{what}");
    let want = if bump.is_none() {
        src.hashkv
    } else {
        hashes[0]
    };
    assert!(hashes.iter().all(|h| *h == want), "{what}: {hashes:?}");
    let o = restore_check(&plan_dir, &[]);
    assert_exit(&o, 0);
    let o = run_lifeboat([
        "status",
        "-o",
        "json",
        &format!("--endpoints={}", c.endpoints()),
    ]);
    assert_exit(&o, 0);
    let versions: Vec<serde_json::Value> = json(&o)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].clone())
        .collect();
    assert_eq!(
        versions,
        vec![serde_json::Value::from(on.version); 3],
        "{what}"
    );
}

/// A 3.6.16 backup onto 3.7.3 nodes (Kubernetes' next etcd), through plan and apply.
#[test]
fn upgrade_a_3_6_backup_onto_3_7_by_plan_and_apply() {
    upgrade(source("3.6"), &etcd37(), None);
}

/// A fresh copy of the source member's dir.
fn member_copy(s: &Source, tmp: &TempDir) -> PathBuf {
    let d = tmp.path().join("m0");
    copy_dir(&s.member_dir, &d);
    d
}

fn check(dir: &Path) -> (std::process::Output, serde_json::Value) {
    let o = run_lifeboat(["check-member", "-o", "json", dir.to_str().unwrap()]);
    let j = json(&o);
    (o, j["members"][0].clone())
}

/// check-member's verdict, and its prediction held by the real etcd of that version.
fn verdict(s: &Source, dir: &Path, what: &str, want: &str, code: i32) -> serde_json::Value {
    let (o, r) = check(dir);
    assert_eq!(r["verdict"], want, "etcd {} {what}: {r:#}", s.bins.version);
    assert_exit(&o, code);
    let predicted = r["etcd_starts"].as_bool().unwrap();
    let got = start_on_dir(&s.bins, dir, "m0", Duration::from_secs(40));
    assert_eq!(
        got.serving, predicted,
        "etcd {} {what}: lifeboat predicted etcd_starts={predicted}\n{r:#}\n{}",
        s.bins.version, got.log
    );
    r
}

fn wal_entries(dir: &Path) -> Vec<serde_json::Value> {
    let o = run_lifeboat([
        "wal",
        "dump",
        "-o",
        "json",
        "--type",
        "entry",
        dir.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    json(&o).as_array().unwrap().clone()
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v.pop().unwrap()
}

/// check-member and wal dump on a member dir the version wrote: clean, torn tail, flipped
/// byte, each prediction checked by starting that etcd.
fn check_member(version: &str) {
    let s = source(version);
    let snaps = std::fs::read_dir(s.member_dir.join("member/snap"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snap")
        })
        .count();
    // The issue expected 3.7 to stop writing v2 .snap files: 3.7.3 still writes them at every
    // raft snapshot (checked here, so a release that stops shows up).
    assert!(
        snaps > 0,
        "etcd {} wrote no .snap files at --snapshot-count",
        s.bins.version
    );
    let tmp = TempDir::new().unwrap();
    let d = member_copy(s, &tmp);
    let r = verdict(s, &d, "clean copy", "healthy", 0);
    let serious = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] != "warning")
        .count();
    assert_eq!(serious, 0, "{r:#}");

    // Torn tail: the last segment cut inside its last entry.
    let tmp = TempDir::new().unwrap();
    let d = member_copy(s, &tmp);
    let last = last_segment(&d);
    let name = last.file_name().unwrap().to_str().unwrap().to_string();
    let entries: Vec<_> = wal_entries(&d)
        .into_iter()
        .filter(|e| e["file"] == name.as_str())
        .collect();
    let rec = entries.last().unwrap()["offset"].as_u64().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(rec + 8 + 4).unwrap();
    drop(f);
    let r = verdict(s, &d, "last entry cut", "torn-tail", 0);
    assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec), "{r:#}");

    // A flipped byte inside a big entry in the middle of the log.
    let tmp = TempDir::new().unwrap();
    let d = member_copy(s, &tmp);
    let entries = wal_entries(&d);
    let big = entries
        .iter()
        .find(|e| e["data_len"].as_u64().or(e["size"].as_u64()).unwrap_or(0) > 5000)
        .unwrap_or(&entries[entries.len() / 2]);
    let file = d.join("member/wal").join(big["file"].as_str().unwrap());
    let rec = big["offset"].as_u64().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[rec as usize + 40] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let r = verdict(s, &d, "flipped byte", "corrupt-wal", 3);
    assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec), "{r:#}");
}

#[test]
fn check_member_on_3_6_dirs() {
    check_member("3.6");
}

#[test]
fn check_member_on_3_7_dirs() {
    check_member("3.7");
}

/// A 3.5.16 backup (no storage version) onto 3.6.16 nodes, through plan and apply, with
/// the revision bump: the Kubernetes 1.33 → 1.34 path.
#[test]
fn upgrade_a_3_5_16_backup_onto_3_6_by_plan_and_apply() {
    let s = source("3.5.16");
    assert!(
        s.manifest.get("storage_version").is_none(),
        "{:#}",
        s.manifest
    );
    upgrade(s, &etcd36(), Some(1000));
}

/// A 3.7 backup planned onto 3.6 nodes, or a 3.6 backup onto 3.5 nodes, is a downgrade:
/// refused at plan time (exit 2) naming the version to use. (etcd 3.6 refuses a 3.7 db at
/// boot; etcd 3.5 would start on a 3.6 db, which etcd does not support.)
#[test]
fn plan_refuses_a_downgrade() {
    for (version, target, want) in [("3.7", "3.6.16", "3.7"), ("3.6", "3.5.16", "3.6")] {
        let s = source(version);
        let dest = s.snap.parent().unwrap().join("backups");
        let tmp = TempDir::new().unwrap();
        let topo = tmp.path().join("topology.toml");
        std::fs::write(
            &topo,
            format!(
                "cluster_token = \"generate\"\netcd_version = \"{target}\"\n\n[[member]]\nname = \"r0\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
                free_port(),
                free_port(),
                tmp.path().join("d").display()
            ),
        )
        .unwrap();
        let out = tmp.path().join("plan");
        let o = run_lifeboat([
            "restore",
            "plan",
            "--from",
            dest.to_str().unwrap(),
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_exit(&o, 2);
        let e = stderr(&o);
        assert!(e.contains(&format!("use {want} or later")), "{e}");
        assert!(!out.join("plan.json").exists());
    }
}

/// What a member's client URL answers at `/version` (`etcdserver`, `etcdcluster`).
fn http_version(client_url: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let addr = client_url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /version HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{client_url}/version: {e}: {text}"))
}

/// `lifeboat status -o json` on the cluster: its exit code and report.
fn status_of(c: &Cluster) -> (i32, serde_json::Value) {
    let o = run_lifeboat([
        "status",
        "-o",
        "json",
        &format!("--endpoints={}", c.endpoints()),
    ]);
    (o.status.code().unwrap_or(-1), json(&o))
}

/// Wait until every member says the cluster version is `want` (the leader raises it a few
/// seconds after the last member runs the new release).
fn wait_cluster_version(c: &Cluster, want: &str) {
    let start = std::time::Instant::now();
    loop {
        let now: Vec<String> = c
            .members
            .iter()
            .map(|m| http_version(&m.client_url)["etcdcluster"].to_string())
            .collect();
        if now.iter().all(|v| v.trim_matches('"') == want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "cluster version still {now:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Restart member `i` on its own data dir with another release's etcd.
fn replace_binary(c: &mut Cluster, i: usize, bins: &Bins) {
    c.stop(i);
    c.members[i].etcd = bins.etcd.clone();
    c.restart(i);
    c.wait_healthy(Duration::from_secs(60));
}

/// The one version-skew finding of a report.
fn skew(j: &serde_json::Value) -> serde_json::Value {
    let all: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "version-skew")
        .collect();
    assert_eq!(all.len(), 1, "{j:#}");
    all[0].clone()
}

/// `status` on one 3-member cluster through two rolling upgrades, a member at a time, each
/// restarted on its own data dir with the next release: 3.5.16 → 3.6.16 → 3.7.3. In the
/// middle of each, the doctor names who runs what and calls the mix one etcd supports (a
/// warning, exit 0; for 3.5.16 it adds the etcd project's advice to be on 3.5.26 first);
/// the cluster version (`/version`) stays the old minor version until the last member
/// runs the new one. Between and after, a 3.6 and a 3.7 cluster are healthy, each member
/// reporting its storage version.
#[test]
fn status_through_rolling_upgrades_3_5_to_3_6_to_3_7() {
    let (e35, e36, e37) = (common::native::etcd3516(), etcd36(), etcd37());
    // Raft snapshots every 25 entries: 3.7.3 panics replaying a WAL that still holds the
    // v2 entries 3.5 wrote at the cluster's creation (pbutil.MustUnmarshalMessage in
    // apply); a snapshot taken on 3.6 puts them behind the replay.
    let mut c = Cluster::start(
        &e35,
        3,
        Opts {
            snapshot_count: Some(25),
            ..Opts::default()
        },
    );
    c.put("/upgrade/k", "v");
    let versions = |j: &serde_json::Value, field: &str| -> Vec<String> {
        let mut v: Vec<(String, String)> = j["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m[field].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, x)| x).collect()
    };
    for (old, new, cv_old, cv_new) in [
        (&e35, &e36, "3.5.0", "3.6.0"),
        (&e36, &e37, "3.6.0", "3.7.0"),
    ] {
        replace_binary(&mut c, 0, new);
        let (code, j) = status_of(&c);
        assert_eq!(code, 0, "{j:#}");
        assert_eq!(
            versions(&j, "version"),
            [new.version, old.version, old.version],
            "{j:#}"
        );
        let f = skew(&j);
        let msg = f["message"].as_str().unwrap();
        assert_eq!(f["level"], "warning", "{f:#}");
        assert!(
            msg.contains(&format!("{} on m1, m2; {} on m0", old.version, new.version))
                && msg.contains("a mix etcd supports"),
            "{msg}"
        );
        assert_eq!(
            msg.contains("3.5.26 or later"),
            old.version == "3.5.16",
            "{msg}"
        );
        assert!(
            f["remedy"].as_str().unwrap().contains("(m1), then"),
            "{f:#}"
        );
        for m in &c.members {
            assert_eq!(http_version(&m.client_url)["etcdcluster"], cv_old);
        }
        // 3.6+ report a storage version, the cluster version's (3.5 reports none).
        let sv = |v: &str| if v == "3.5.16" { "" } else { cv_old };
        assert_eq!(
            versions(&j, "storage_version"),
            [sv(new.version), sv(old.version), sv(old.version)],
            "{j:#}"
        );
        replace_binary(&mut c, 1, new);
        replace_binary(&mut c, 2, new);
        wait_cluster_version(&c, cv_new);
        let (code, j) = status_of(&c);
        assert_eq!(code, 0, "{j:#}");
        assert!(
            j["findings"].to_string().find("version-skew").is_none(),
            "{j:#}"
        );
        assert_eq!(versions(&j, "version"), [new.version; 3], "{j:#}");
        assert_eq!(versions(&j, "storage_version"), [cv_new; 3], "{j:#}");
        // Entries enough for a raft snapshot on every member of the new release.
        c.fill_batched("/upgrade/fill/", 40, 10, 1);
    }
    assert_eq!(
        c.ctl_ok(&["get", "/upgrade/k", "--print-value-only"])
            .trim(),
        "v"
    );
}
