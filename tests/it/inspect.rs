//! `lifeboat inspect`, `get` and `diff` against databases written by real etcd 3.5.1 and
//! 3.4.23, compared field by field with `etcdutl snapshot status` and `etcdctl endpoint
//! hashkv`, plus corrupted copies that must give exit 3 naming the damaged page.
//!
//! Each etcd version's fixture is built once per test process (a `OnceLock`): a history
//! with puts, deletes, txns, a lease, values larger than a page, Kubernetes-like keys, bulk
//! keys (so the key bucket has branch pages), a compaction and writes after it.
use crate::common::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lifeboat::format::bolt::{BucketRoot, Db};

mod damage;
mod get_diff;

struct Fixture {
    version: &'static str,
    /// Taken before the compaction (for diff).
    snap_a: PathBuf,
    /// The main snapshot (after compaction and later writes).
    snap: PathBuf,
    /// The member's db copied after a clean stop (no trailer).
    raw: PathBuf,
    status: serde_json::Value,
    raw_status: serde_json::Value,
    revision: i64,
    compact: i64,
    hashkv: u32,
    mid_rev: i64,
    hashkv_mid: u32,
    live_keys: u64,
    get_fix: serde_json::Value,
    get_fix_mid: serde_json::Value,
    member_name: String,
    member_id: u64,
    auth: bool,
}

fn json_of(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn build(bins: &Bins, bulk: usize, auth: bool) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("inspect-fixture-{}", bins.version));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Cluster::single(
        bins,
        Opts {
            extra_args: vec!["--max-txn-ops=5000".into()],
            ..Opts::default()
        },
    );
    c.put("/fix/a", "1");
    c.put("/fix/b", "2");
    c.put("/fix/a", "11");
    c.ctl_ok(&["del", "/fix/b"]);
    c.put("/fix/big1", &"x".repeat(10_000));
    c.put("/fix/big2", &"y".repeat(20_000));
    let lease = c.ctl_ok(&["lease", "grant", "3600"]);
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    c.ctl_ok(&["put", &format!("--lease={id}"), "/fix/leased", "v"]);
    c.fill("/fix/txn/", 3, 5);
    c.put("/registry/pods/ns1/p1", &"p".repeat(300));
    c.put("/registry/pods/ns2/p2", &"q".repeat(200));
    c.put("/registry/pods/ns1/p3", "gone soon");
    c.put("/registry/namespaces/ns1", "ns");
    c.put("/registry/example.com/widgets/ns1/w1", &"w".repeat(50));
    c.ctl_ok(&["del", "/registry/pods/ns1/p3"]);
    c.fill_batched("/bulk/", bulk, 20, 5000);
    let snap_a = dir.join("a.db");
    c.ctl_ok(&["snapshot", "save", snap_a.to_str().unwrap()]);
    let rev_of = |c: &Cluster| -> i64 {
        let v = json_of(&c.ctl_ok(&["get", "/", "--prefix", "--limit=1", "-w", "json"]));
        v["header"]["revision"].as_i64().unwrap()
    };
    let r1 = rev_of(&c);
    let compact = r1 - 3;
    c.ctl_ok(&["compact", &compact.to_string()]);
    c.put("/fix/a", "a3");
    let mid_rev = rev_of(&c);
    c.put("/fix/a", "a4");
    c.ctl_ok(&["del", "/fix/big1"]);
    c.put("/fix/new", "n");
    c.put("/bulk/00000001", "changed");
    let mut user: Vec<String> = vec![];
    if auth {
        c.ctl_ok(&["user", "add", "root:pw"]);
        c.ctl_ok(&["user", "grant-role", "root", "root"]);
        c.ctl_ok(&["auth", "enable"]);
        user = vec!["--user=root:pw".into()];
    }
    let ctl = |c: &Cluster, args: &[&str]| {
        let mut a: Vec<&str> = user.iter().map(|s| s.as_str()).collect();
        a.extend_from_slice(args);
        c.ctl_ok(&a)
    };
    let snap = dir.join("snap.db");
    ctl(&c, &["snapshot", "save", snap.to_str().unwrap()]);
    let hk = json_of(&ctl(&c, &["endpoint", "hashkv", "-w", "json"]));
    let hashkv = hk[0]["HashKV"]["hash"].as_u64().unwrap() as u32;
    let revision = hk[0]["HashKV"]["header"]["revision"].as_i64().unwrap();
    let hk_mid = json_of(&ctl(
        &c,
        &[
            "endpoint",
            "hashkv",
            "--rev",
            &mid_rev.to_string(),
            "-w",
            "json",
        ],
    ));
    let hashkv_mid = hk_mid[0]["HashKV"]["hash"].as_u64().unwrap() as u32;
    let count = json_of(&ctl(
        &c,
        &["get", "", "--prefix", "--limit=1", "-w", "json"],
    ));
    let live_keys = count["count"].as_u64().unwrap_or(0);
    let get_fix = json_of(&ctl(&c, &["get", "/fix/", "--prefix", "-w", "json"]));
    let get_fix_mid = json_of(&ctl(
        &c,
        &[
            "get",
            "/fix/",
            "--prefix",
            "--rev",
            &mid_rev.to_string(),
            "-w",
            "json",
        ],
    ));
    let members = json_of(&ctl(&c, &["member", "list", "-w", "json"]));
    let member_id = members["members"][0]["ID"].as_u64().unwrap();
    let member_name = members["members"][0]["name"].as_str().unwrap().to_string();
    c.stop(0);
    let raw = dir.join("raw.db");
    std::fs::copy(c.data_dir(0).join("member/snap/db"), &raw).unwrap();
    drop(c);
    let etcdutl = etcd35().etcdutl.unwrap();
    let status = |p: &Path| {
        let o = std::process::Command::new(&etcdutl)
            .args(["snapshot", "status", "-w", "json"])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success(), "etcdutl: {}", stderr(&o));
        json_of(&stdout(&o))
    };
    Fixture {
        version: bins.version,
        status: status(&snap),
        raw_status: status(&raw),
        snap_a,
        snap,
        raw,
        revision,
        compact,
        hashkv,
        mid_rev,
        hashkv_mid,
        live_keys,
        get_fix,
        get_fix_mid,
        member_name,
        member_id,
        auth,
    }
}

fn fx35() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(&etcd35(), 100_000, true))
}

fn fx34() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(&etcd34(), 10_000, false))
}

fn inspect_json(args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut a = vec!["inspect", "-o", "json"];
    a.extend_from_slice(args);
    let o = run_lifeboat(&a);
    let j = json(&o);
    (o, j)
}

fn check_against_etcd(f: &Fixture) {
    let v = f.version;
    for (path, status, kind) in [
        (&f.snap, &f.status, "snapshot"),
        (&f.raw, &f.raw_status, "db"),
    ] {
        let (o, j) = inspect_json(&[path.to_str().unwrap()]);
        assert_exit(&o, 0);
        assert_eq!(j["ok"], true, "{v} {kind}: {j}");
        assert_eq!(j["input_kind"], kind);
        assert_eq!(j["etcdutl_hash"], status["hash"], "{v} {kind} hash");
        assert_eq!(j["revision"], status["revision"], "{v} {kind} revision");
        assert_eq!(
            j["total_entries"], status["totalKey"],
            "{v} {kind} totalKey"
        );
        assert_eq!(j["db_size"], status["totalSize"], "{v} {kind} totalSize");
        assert_eq!(j["revision"].as_i64(), Some(f.revision), "{v} {kind}");
        assert_eq!(
            j["hashkv"].as_u64(),
            Some(u64::from(f.hashkv)),
            "{v} {kind} hashkv"
        );
        assert_eq!(j["hashkv_revision"].as_i64(), Some(f.revision));
        assert_eq!(
            j["compact_revision"].as_i64(),
            Some(f.compact),
            "{v} {kind}"
        );
        assert_eq!(
            j["live_keys"].as_u64(),
            Some(f.live_keys),
            "{v} {kind} live keys"
        );
        assert_eq!(j["page_size"], 4096);
        assert!(j["in_use_size"].as_u64().unwrap() <= j["db_size"].as_u64().unwrap());
        assert_eq!(j["members"][0]["name"], f.member_name.as_str());
        assert_eq!(j["members"][0]["id"], format!("{:x}", f.member_id));
        assert_eq!(j["auth_enabled"], f.auth, "{v} {kind} auth");
        assert_eq!(j["leases"], 1);
        assert!(j["tombstones"].as_u64().unwrap() >= 1);
        let key_bucket = j["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "key")
            .unwrap();
        assert!(
            key_bucket["branch_pages"].as_u64().unwrap() > 0,
            "{v}: no branch pages"
        );
        assert!(
            key_bucket["overflow_pages"].as_u64().unwrap() > 0,
            "{v}: no overflow"
        );
        if kind == "snapshot" {
            assert_eq!(j["digest"]["ok"], true);
            assert_eq!(j["digest"]["source"], "trailer");
        }
        if v == "3.5" {
            assert_eq!(j["cluster_version"], "3.5.0");
            assert!(j["conf_state"]["voters"][0].as_u64() == Some(f.member_id));
            assert!(j["consistent_index"].as_u64().unwrap() > 0);
            assert!(j["term"].as_u64().unwrap() > 0);
        }
        // hashkv at an older revision, after the compaction point.
        let (o, j) = inspect_json(&[path.to_str().unwrap(), "--rev", &f.mid_rev.to_string()]);
        assert_exit(&o, 0);
        assert_eq!(
            j["hashkv"].as_u64(),
            Some(u64::from(f.hashkv_mid)),
            "{v} {kind} hashkv mid"
        );
    }
    // A revision at or below the compaction is refused like etcd refuses it.
    let o = run_lifeboat([
        "inspect",
        f.snap.to_str().unwrap(),
        "--rev",
        &f.compact.to_string(),
    ]);
    assert_exit(&o, 2);
}

#[test]
fn inspect_matches_etcdutl_and_hashkv_35() {
    check_against_etcd(fx35());
}

#[test]
fn inspect_matches_etcdutl_and_hashkv_34() {
    check_against_etcd(fx34());
}

#[test]
fn inspect_text_and_k8s_summary() {
    let f = fx34();
    let o = run_lifeboat([
        "inspect",
        f.snap.to_str().unwrap(),
        "--k8s",
        "--by-namespace",
    ]);
    assert_exit(&o, 0);
    let t = stdout(&o);
    assert!(t.contains("Verdict        OK"), "{t}");
    assert!(t.contains("example.com/widgets"), "{t}");
    let (o, j) = inspect_json(&[
        f.snap.to_str().unwrap(),
        "--k8s",
        "--by-namespace",
        "--top",
        "3",
    ]);
    assert_exit(&o, 0);
    let res = j["k8s"]["resources"].as_array().unwrap();
    let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(pods["keys"], 2);
    assert_eq!(pods["bytes"], 500);
    assert_eq!(pods["revisions"], 4); // p1, p2, p3 (kept: deleted after the compaction), its delete
    let ns = j["k8s"]["namespaces"].as_array().unwrap();
    let ns1 = ns.iter().find(|r| r["name"] == "ns1").unwrap();
    assert_eq!(ns1["keys"], 2); // p1 and w1
    assert_eq!(
        j["k8s"]["largest_objects"][0]["key"],
        "/registry/pods/ns1/p1"
    );
    assert_eq!(j["k8s"]["largest_objects"].as_array().unwrap().len(), 3);
    assert_eq!(j["largest_keys"][0]["key"], "/fix/big2");
    assert_eq!(j["largest_keys"].as_array().unwrap().len(), 3);
}

// ---- a running member ------------------------------------------------------------

#[test]
fn running_member_compare_live_and_backups() {
    let bins = etcd35();
    let c = Cluster::single(&bins, Opts::default());
    for i in 0..20 {
        c.put(&format!("/live/{i}"), &format!("v{i}"));
    }
    c.ctl_ok(&["del", "/live/3"]);
    c.ctl_ok(&["compact", "10"]);
    c.put("/live/after", "x");
    let dir = TempDir::new().unwrap();
    let snap = dir.path().join("s.db");
    c.ctl_ok(&["snapshot", "save", snap.to_str().unwrap()]);

    // The live member's db is refused, and read through a copy with --copy-live.
    let data_dir = c.data_dir(0).to_path_buf();
    let db = data_dir.join("member/snap/db");
    let o = run_lifeboat(["inspect", db.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("running etcd"), "{}", stderr(&o));
    let o = run_lifeboat(["inspect", data_dir.to_str().unwrap()]);
    assert_exit(&o, 2);
    let o = run_lifeboat(["inspect", "--copy-live", "-o", "json", db.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["ok"], true);
    let o = run_lifeboat(["get", db.to_str().unwrap(), "/live/1"]);
    assert_exit(&o, 2);

    // --compare-live: equal now, and still equal at the snapshot's revision after more
    // writes and a compaction between the snapshot's compaction and its revision.
    let mut args: Vec<String> = vec![
        "inspect".into(),
        "-o".into(),
        "json".into(),
        "--compare-live".into(),
        snap.to_str().unwrap().into(),
    ];
    args.extend(c.conn_args());
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    let j = json(&o);
    assert_eq!(j["live"][0]["matches"], true, "{j}");
    c.put("/live/later", "y");
    c.put("/live/1", "changed");
    c.ctl_ok(&["compact", "15"]);
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    let j = json(&o);
    assert_eq!(j["live"][0]["compact_revision"], 15, "{j}");
    assert_eq!(j["live"][0]["matches"], true, "{j}");
    // Compacted past the snapshot's revision: the cluster cannot answer.
    let rev = j["revision"].as_i64().unwrap();
    c.ctl_ok(&["compact", &(rev + 1).to_string()]);
    let o = run_lifeboat(&args);
    assert_exit(&o, 1);

    // A lifeboat backup: by file and by DEST:ID, same database as a fresh snapshot.
    let dest = dir.path().join("dest");
    let mut b: Vec<String> = vec![
        "backup".into(),
        "--to".into(),
        dest.to_str().unwrap().into(),
    ];
    b.extend(c.conn_args());
    assert_exit(&run_lifeboat(&b), 0);
    let spec = format!("{}:latest", dest.display());
    let (o, j) = inspect_json(&[&spec]);
    assert_exit(&o, 0);
    assert_eq!(j["input_kind"], "backup");
    assert_eq!(j["digest"]["source"], "manifest");
    assert_eq!(j["digest"]["ok"], true);
    let obj = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".db.zst"))
        .unwrap();
    let (o, j2) = inspect_json(&[obj.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(j2["etcdutl_hash"], j["etcdutl_hash"]);
    let o = run_lifeboat(["get", &spec, "/live/1"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "/live/1\nchanged\n");
    // A missing file is exit 1; a missing id is exit 1 (not found).
    assert_exit(&run_lifeboat(["inspect", "/nonexistent/file.db"]), 1);
    assert_exit(
        &run_lifeboat(["inspect", &format!("{}:nope", dest.display())]),
        1,
    );
}

#[test]
fn nospace_alarm_is_reported() {
    let c = Cluster::single(
        &etcd35(),
        Opts {
            quota_backend_bytes: Some(2 * 1024 * 1024),
            ..Opts::default()
        },
    );
    c.fill_until_nospace(100_000);
    let dir = TempDir::new().unwrap();
    let snap = dir.path().join("s.db");
    c.ctl_ok(&["snapshot", "save", snap.to_str().unwrap()]);
    let members = json_of(&c.ctl_ok(&["member", "list", "-w", "json"]));
    let id = members["members"][0]["ID"].as_u64().unwrap();
    let (o, j) = inspect_json(&[snap.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(j["alarms"][0]["alarm"], "NOSPACE", "{j}");
    assert_eq!(j["alarms"][0]["member_id"], format!("{id:x}"));
    let o = run_lifeboat(["inspect", snap.to_str().unwrap()]);
    assert!(stdout(&o).contains("NOSPACE on member"), "{}", stdout(&o));
}

#[test]
fn members_removed_members_and_learners() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    let list = json_of(&c.ctl_ok(&["member", "list", "-w", "json"]));
    let id_of = |name: &str| {
        list["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["ID"]
            .as_u64()
            .unwrap()
    };
    let gone = id_of("m2");
    // etcd refuses to remove a voter unless the others have been connected for 5 s.
    std::thread::sleep(std::time::Duration::from_secs(6));
    c.stop(2);
    let ep0 = c.members[0].client_url.clone();
    let o = c.ctl_at(&ep0, &["member", "remove", &format!("{gone:x}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = c.ctl_at(
        &ep0,
        &[
            "member",
            "add",
            "late",
            "--learner",
            "--peer-urls=http://127.0.0.1:1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    c.put("/m/x", "1");
    let dir = TempDir::new().unwrap();
    let snap = dir.path().join("s.db");
    let o = c.ctl_at(&ep0, &["snapshot", "save", snap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, j) = inspect_json(&[snap.to_str().unwrap()]);
    assert_exit(&o, 0);
    let members = j["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{j}");
    let learner = members.iter().find(|m| m["is_learner"] == true).unwrap();
    assert_eq!(learner["peer_urls"][0], "http://127.0.0.1:1");
    assert_eq!(
        j["removed_members"],
        serde_json::json!([format!("{gone:x}")])
    );
    assert_eq!(
        j["conf_state"]["voters"].as_array().unwrap().len(),
        2,
        "{j}"
    );
    assert_eq!(
        j["conf_state"]["learners"].as_array().unwrap().len(),
        1,
        "{j}"
    );
}
