//! The native restore writer against etcdutl and real etcd: byte-identical WAL and snap
//! files, db buckets equal entry by entry, and etcd 3.4.23, 3.5.1 and 3.5.16 booting on
//! natively restored member dirs with every key, revision and `endpoint hashkv` intact.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::native::{etcd3516, BootMember, Booted};
use crate::common::{etcd34, etcd35, free_port, Cluster, Opts};
use lifeboat::format::bolt::Db;
use lifeboat::restore::native::{write_member_dirs, MemberSpec, RestoreSpec, WrittenMember};

/// The source: a 3.5.1 member's snapshot (with puts, overwrites and deletes) and what the
/// member served when it was taken.
struct Source {
    snap: PathBuf,
    /// `get "" --from-key -w json` kvs.
    kvs: serde_json::Value,
    revision: i64,
    hashkv: u64,
}

fn source() -> &'static Source {
    static S: OnceLock<Source> = OnceLock::new();
    S.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("native_restore");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Cluster::single(&etcd35(), Opts::default());
        for i in 0..20 {
            c.put(&format!("/n/{i:02}"), &format!("value-{i}"));
        }
        // Enough data that `key` is a tree of pages, so the bump goes through the writer's
        // rightmost-path append rather than a rebuild.
        c.fill("/fill/", 300, 200);
        c.put("/n/03", "again");
        c.put("/n/03", "and again");
        c.ctl_ok(&["del", "/n/07"]);
        c.ctl_ok(&["del", "/n/1", "--prefix"]);
        let snap = dir.join("snap.db");
        c.ctl_ok(&["snapshot", "save", snap.to_str().unwrap()]);
        let bytes = std::fs::read(&snap).unwrap();
        let db = Db::open(&bytes[..bytes.len() - 32]).unwrap();
        let key = db.bucket(b"key").unwrap().unwrap();
        assert!(
            matches!(key.root(), lifeboat::format::bolt::BucketRoot::Page(_)),
            "the source's key bucket should span pages"
        );
        let get: serde_json::Value =
            serde_json::from_str(&c.ctl_ok(&["get", "", "--from-key", "-w", "json"])).unwrap();
        let hk: serde_json::Value =
            serde_json::from_str(&c.ctl_ok(&["endpoint", "hashkv", "-w", "json"])).unwrap();
        Source {
            snap,
            kvs: get["kvs"].clone(),
            revision: get["header"]["revision"].as_i64().unwrap(),
            hashkv: hk[0]["HashKV"]["hash"].as_u64().unwrap(),
        }
    })
}

fn spec(members: &[(String, String)], token: &str, bump: Option<u64>) -> RestoreSpec {
    RestoreSpec {
        members: members
            .iter()
            .map(|(n, u)| MemberSpec {
                name: n.clone(),
                peer_urls: vec![u.clone()],
            })
            .collect(),
        token: token.into(),
        bump_revision: bump,
        mark_compacted: bump.is_some(),
    }
}

/// Native restore of every member into `<out>/<name>`.
fn native(
    members: &[(String, String)],
    token: &str,
    bump: Option<u64>,
    out: &Path,
) -> Vec<WrittenMember> {
    let bytes = std::fs::read(&source().snap).unwrap();
    let (db, trailer) = bytes.split_at(bytes.len() - 32);
    let targets: Vec<(String, PathBuf, Option<PathBuf>)> = members
        .iter()
        .map(|(n, _)| (n.clone(), out.join(n), None))
        .collect();
    write_member_dirs(
        &db.to_vec(),
        Some(trailer.try_into().unwrap()),
        &spec(members, token, bump),
        &targets,
    )
    .unwrap()
}

fn etcdutl(
    bins: &common::Bins,
    members: &[(String, String)],
    me: usize,
    token: &str,
    extra: &[&str],
    dir: &Path,
) {
    let cluster: Vec<String> = members.iter().map(|(n, u)| format!("{n}={u}")).collect();
    let o = Command::new(bins.etcdutl.as_ref().unwrap())
        .args(["snapshot", "restore", source().snap.to_str().unwrap()])
        .arg(format!("--name={}", members[me].0))
        .arg(format!("--initial-cluster={}", cluster.join(",")))
        .arg(format!("--initial-cluster-token={token}"))
        .arg(format!("--initial-advertise-peer-urls={}", members[me].1))
        .arg(format!("--data-dir={}", dir.display()))
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let first = x.iter().zip(&y).position(|(p, q)| p != q);
    assert!(
        x.len() == y.len() && first.is_none(),
        "{} and {} differ: lengths {} and {}, first difference at {first:?}",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

type Buckets = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

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

fn same_buckets(a: &Path, b: &Path) {
    let (x, y) = (buckets(a), buckets(b));
    assert_eq!(
        x.keys().collect::<Vec<_>>(),
        y.keys().collect::<Vec<_>>(),
        "bucket names"
    );
    for (name, ex) in &x {
        assert_eq!(ex, &y[name], "bucket {}", String::from_utf8_lossy(name));
    }
}

fn strict_ok(db: &Path) {
    struct N;
    impl lifeboat::format::bolt::EntryVisitor for N {}
    let bytes = std::fs::read(db).unwrap();
    let r = lifeboat::format::bolt::check(&bytes, &Default::default(), &mut N);
    assert!(r.ok(), "{}: {:?}", db.display(), r.problems);
}

fn members(n: usize, ports: bool) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let port = if ports { free_port() } else { 2380 + i as u16 };
            (format!("m{i}"), format!("http://127.0.0.1:{port}"))
        })
        .collect()
}

/// Native and etcdutl restores of the same members: WAL and snap byte-identical, db
/// buckets equal entry by entry, both dbs pass the strict check and `snapshot status`.
fn equivalent(bins: &common::Bins, n: usize, bump: Option<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let ms = members(n, false);
    let token = "equivalence-token";
    let extra: Vec<String> = match bump {
        Some(b) => vec![format!("--bump-revision={b}"), "--mark-compacted".into()],
        None => vec![],
    };
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let written = native(&ms, token, bump, &tmp.path().join("native"));
    for (i, (name, _)) in ms.iter().enumerate() {
        let theirs = tmp.path().join("etcdutl").join(name);
        etcdutl(bins, &ms, i, token, &extra, &theirs);
        let ours = &written[i].data_dir;
        let wal = "member/wal/0000000000000000-0000000000000000.wal";
        same_bytes(&ours.join(wal), &theirs.join(wal));
        let snap = format!("member/snap/0000000000000001-{n:016x}.snap");
        same_bytes(&ours.join(&snap), &theirs.join(&snap));
        let mut names: Vec<_> = std::fs::read_dir(ours.join("member/snap"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                std::ffi::OsString::from(
                    "0000000000000001-".to_string() + &format!("{n:016x}.snap")
                ),
                "db".into()
            ]
        );
        same_buckets(&ours.join("member/snap/db"), &theirs.join("member/snap/db"));
        strict_ok(&ours.join("member/snap/db"));
        let st = Command::new(bins.etcdutl.as_ref().unwrap())
            .args(["snapshot", "status", "-w", "json"])
            .arg(ours.join("member/snap/db"))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn equivalent_to_etcdutl_3_5_1() {
    equivalent(&etcd35(), 3, None);
}

#[test]
fn equivalent_to_etcdutl_3_5_16_plain_and_with_bump() {
    let b = etcd3516();
    equivalent(&b, 3, None);
    equivalent(&b, 1, Some(1000));
}

/// Restore natively, boot `bins` on the dirs, and compare what the cluster serves with
/// what the source served.
fn boots(bins: &common::Bins, n: usize, bump: Option<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let ms = members(n, true);
    let written = native(&ms, "boot-token", bump, tmp.path());
    let boot: Vec<BootMember> = written
        .iter()
        .zip(&ms)
        .map(|(w, (name, url))| BootMember {
            name: name.clone(),
            data_dir: w.data_dir.clone(),
            peer_url: url.clone(),
        })
        .collect();
    let ctl = etcd35();
    let c = Booted::start(bins, &ctl, &boot, Duration::from_secs(90));
    let src = source();
    for ep in &c.clients {
        let o = Command::new(&ctl.etcdctl)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(["get", "", "--from-key", "-w", "json", "--consistency=s"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(got["kvs"], src.kvs, "{} at {ep}", bins.version);
        let want_rev = src.revision + bump.map(|b| b as i64).unwrap_or(0);
        assert_eq!(
            got["header"]["revision"].as_i64(),
            Some(want_rev),
            "{}",
            bins.version
        );
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
            "{hashes:?} vs {}",
            src.hashkv
        );
    } else {
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    }
    // Members are the restored ones.
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
    assert_eq!(ids, want);
}

#[test]
fn etcd_3_5_1_boots_three_native_members() {
    boots(&etcd35(), 3, None);
}

#[test]
fn etcd_3_4_boots_three_native_members() {
    boots(&etcd34(), 3, None);
}

#[test]
fn etcd_3_5_1_boots_one_native_member() {
    boots(&etcd35(), 1, None);
}

#[test]
fn etcd_3_4_boots_one_native_member() {
    boots(&etcd34(), 1, None);
}

#[test]
fn etcd_3_5_16_boots_one_native_member() {
    boots(&etcd3516(), 1, None);
}

#[test]
fn etcd_3_5_16_boots_three_native_members() {
    boots(&etcd3516(), 3, None);
}

#[test]
fn etcd_3_5_16_boots_three_bumped_native_members() {
    boots(&etcd3516(), 3, Some(1000));
}
