//! The rails around a restore, on real etcd (3.4.23, 3.5.1, 3.5.16): nothing is moved or
//! written under a running etcd (`restore apply` native and with etcd's tool, `--force`,
//! the node scripts with and without lifeboat, `--from-data-dir`, the replace-member
//! script); one plan per cluster (the same plan again is a no-op, another plan is refused
//! unless `--force`); a backup damaged after planning moves nothing; and plans that say
//! what will happen (the bump on old nodes, the topology's version, `bump_revision` always
//! in plan.json).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::restore::*;
use crate::common::store::*;
use crate::common::*;

/// A topology of `n` members on fresh ports; member r0's data dir is `first_dir`.
fn topology(version: &str, token: &str, first_dir: &Path, work: &Path, n: usize) -> String {
    let mut t = format!("cluster_token = \"{token}\"\netcd_version = \"{version}\"\n");
    for i in 0..n {
        let dir = if i == 0 {
            first_dir.to_path_buf()
        } else {
            work.join(format!("r{i}"))
        };
        t.push_str(&format!(
            "\n[[member]]\nname = \"r{i}\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\nruns_as = \"command\"\n",
            free_port(),
            free_port(),
            dir.display()
        ));
    }
    t
}

fn plan(from: &str, topo: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "restore",
        "plan",
        "--from",
        from,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ];
    args.extend(extra);
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    json(&o)
}

fn apply(plan: &Path, node: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "restore",
        "apply",
        "--plan",
        plan.to_str().unwrap(),
        "--node",
        node,
    ];
    args.extend(extra);
    run_lifeboat(&args)
}

/// Run a generated script with `path` as PATH (the host check skipped: the plans use
/// 127.0.0.1).
fn script(file: &Path, path: &str) -> Output {
    Command::new("bash")
        .arg(file)
        .env("PATH", path)
        .env("LIFEBOAT_SKIP_HOST_CHECK", "1")
        .env_remove("ETCDCTL_ENDPOINTS")
        .output()
        .unwrap()
}

/// A PATH with lifeboat on it (and the system tools).
fn path_with_lifeboat(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("lifeboat");
    if !link.exists() {
        std::os::unix::fs::symlink(lifeboat(), &link).unwrap();
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

/// A PATH without lifeboat: etcd's tool of `bins`, then the system tools (which hold
/// Debian's etcdctl 3.4).
fn path_without_lifeboat(bins: &Bins) -> String {
    let tool = bins.etcdutl.clone().unwrap_or(bins.etcdctl.clone());
    format!("{}:/usr/bin:/bin", tool.parent().unwrap().display())
}

/// Every entry of `dir`, to show that nothing changed.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

fn one_line(o: &Output) -> String {
    let e = stderr(o);
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    e
}

/// Items 1 and 2 of the rails on one etcd release: a member runs on the data dir a plan
/// restores into; every way of writing it is refused (exit 1, naming the pid) and nothing
/// changes. Stopped, the plan applies, and applies again as a no-op. A second plan (new
/// token) is refused on a dir the first restored (exit 2, both plans and the time named,
/// by lifeboat and by the script), until `--force` moves it aside; the second plan's
/// members then form one cluster.
fn rails(bins: &Bins, version: &str) {
    let mut c = Cluster::single(bins, Opts::default());
    c.fill("/g/", 100, 16);
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    let live_dir = c.data_dir(0).to_path_buf();
    let pid = c.members[0].pid().unwrap();
    let work = TempDir::new().unwrap();
    let w = work.path();
    let topo = w.join("t.toml");
    std::fs::write(&topo, topology(version, "plan-a", &live_dir, w, 3)).unwrap();
    let plan_a = w.join("plan-a");
    let pa = plan(d, &topo, &plan_a, &["--no-bump-revision"]);
    assert_eq!(
        pa["bump_revision"], 0,
        "bump_revision is always in plan.json"
    );

    // Item 1: etcd runs on r0's data dir.
    let parent = live_dir.parent().unwrap().to_path_buf();
    let before = listing(&parent);
    let tool = bins.etcdutl.clone().unwrap_or(bins.etcdctl.clone());
    let tool = tool.to_str().unwrap();
    for extra in [
        vec![],
        vec!["--force"],
        vec!["--etcdutl", tool],
        vec!["--dry-run"],
    ] {
        let o = apply(&plan_a, "r0", &extra);
        assert_exit(&o, 1);
        let e = one_line(&o);
        assert!(
            e.contains(&format!("held by pid {pid} (etcd)")) && e.contains("stop it first"),
            "{extra:?}: {e}"
        );
    }
    let o = apply(&plan_a, "r0", &["-o", "json"]);
    assert_exit(&o, 1);
    assert!(json(&o)["error"].as_str().unwrap().contains("is in use"));
    for path in [path_without_lifeboat(bins), path_with_lifeboat(w)] {
        let o = script(&plan_a.join("r0.sh"), &path);
        assert_exit(&o, 1);
        let e = one_line(&o);
        assert!(
            e.contains(&format!("pid {pid} (etcd) holds its files"))
                && e.contains("stop the etcd process"),
            "{e}"
        );
    }
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from-data-dir",
        live_dir.to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        w.join("from-live").to_str().unwrap(),
    ]);
    assert_exit(&o, 1);
    let e = one_line(&o);
    assert!(
        e.contains(&format!("held by pid {pid}")) && !e.contains("--copy-live"),
        "{e}"
    );
    assert_eq!(listing(&parent), before, "nothing moved or written");
    assert!(!w.join("from-live").exists());
    c.put("/g/still-serving", "yes");

    // Stopped, the plan applies; again, it is a no-op.
    c.stop(0);
    let o = apply(&plan_a, "r0", &["-o", "json"]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert!(r["moved_aside"].as_str().is_some(), "{r}");
    assert_eq!(r["already_restored"], false);
    let o = apply(&plan_a, "r0", &["-o", "json"]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["already_restored"], true, "{r}");
    assert!(r["moved_aside"].is_null());
    assert!(
        r["steps"][0]
            .as_str()
            .unwrap()
            .contains("already restored by this plan at 20"),
        "{r}"
    );
    let o = script(&plan_a.join("r0.sh"), &path_without_lifeboat(bins));
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("already restored by this plan"),
        "{}",
        stdout(&o)
    );

    // Item 2: a second plan (new token) over the first.
    std::fs::write(&topo, topology(version, "plan-b", &live_dir, w, 3)).unwrap();
    let plan_b = w.join("plan-b");
    let pb = plan(d, &topo, &plan_b, &["--no-bump-revision"]);
    assert_ne!(pa["cluster_id"], pb["cluster_id"]);
    let o = apply(&plan_b, "r0", &[]);
    assert_exit(&o, 2);
    let e = one_line(&o);
    let digest = |dir: &Path| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(dir.join("plan.json")).unwrap(),
        ))[..16]
            .to_string()
    };
    let (da, db) = (digest(&plan_a), digest(&plan_b));
    assert!(
        e.contains(&format!(
            "restored by plan {da} (token plan-a, backup {}) at 20",
            m["id"].as_str().unwrap()
        )) && e.contains(&format!("not by this plan {db} (token plan-b"))
            && e.contains("--force"),
        "{e}"
    );
    for path in [path_without_lifeboat(bins), path_with_lifeboat(w)] {
        let o = script(&plan_b.join("r0.sh"), &path);
        assert_exit(&o, 2);
        let e = one_line(&o);
        assert!(
            e.contains(&format!("restored by plan {da} (token plan-a, backup"))
                && e.contains(&format!("not by this plan {db} (token plan-b")),
            "{e}"
        );
    }
    // --force moves the restored dir (and its mark) aside like any other.
    let o = apply(&plan_b, "r0", &["--force", "-o", "json"]);
    assert_exit(&o, 0);
    let aside = json(&o)["moved_aside"].as_str().unwrap().to_string();
    let aside_mark = std::fs::read_to_string(format!("{aside}.lifeboat-restored")).unwrap();
    assert!(aside_mark.contains(&format!("plan={da}")), "{aside_mark}");
    for node in ["r1", "r2"] {
        assert_exit(&apply(&plan_b, node, &[]), 0);
    }
    assert_exit(&apply(&plan_a, "r1", &[]), 2);
    let r = start_from_plan(bins, &pb);
    let list: serde_json::Value =
        serde_json::from_str(&r.ctl_ok(&["member", "list", "-w", "json"])).unwrap();
    assert_eq!(
        format!("{:x}", list["header"]["cluster_id"].as_u64().unwrap()),
        pb["cluster_id"].as_str().unwrap()
    );
    assert_eq!(list["members"].as_array().unwrap().len(), 3);
    let v = r.ctl_ok(&["get", "/g/00000099", "--print-value-only"]);
    assert_eq!(v.trim(), "v".repeat(16));
    // Now it runs: the same plan is still a no-op, and no flag writes under it.
    let o = apply(&plan_b, "r0", &["-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["already_restored"], true);
    let o = apply(&plan_a, "r0", &["--force"]);
    assert_exit(&o, 1);
    assert!(one_line(&o).contains("held by pid"), "{}", stderr(&o));
}

#[test]
fn rails_etcd351() {
    rails(&etcd35(), "3.5.1");
}

#[test]
fn rails_etcd3516() {
    rails(&etcd3516(), "3.5.16");
}

#[test]
fn rails_etcd34() {
    rails(&etcd34(), "3.4");
}

/// Item 5 on one release whose etcd tool cannot bump the revision: the plan with the bump
/// is valid (a warning names the members that need lifeboat); etcd's tool refuses it (the
/// script's fallback and `apply --etcdutl`: exit 2, one line); lifeboat's writer does it,
/// and the real etcd starts on it with the revision bumped and the old ones compacted.
fn bump_on_old_nodes(bins: &Bins, version: &str) {
    let mut c = Cluster::single(bins, Opts::default());
    c.fill("/b/", 50, 8);
    let rev = {
        let out = c.ctl_ok(&["get", "/b/", "--prefix", "--limit=1", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    c.stop(0);

    // The starting topology names the backup's full version.
    let o = run_lifeboat(["restore", "topology", "--from", d]);
    assert_exit(&o, 0);
    let full = m["etcd_version"].as_str().unwrap();
    assert_eq!(full.matches('.').count(), 2, "{full}");
    assert!(
        stdout(&o).contains(&format!("etcd_version = \"{full}\"")),
        "{}",
        stdout(&o)
    );

    let work = TempDir::new().unwrap();
    let w = work.path();
    let topo = w.join("t.toml");
    std::fs::write(&topo, topology(version, "bumped", &w.join("r0"), w, 1)).unwrap();
    let out = w.join("plan");
    let p = plan(d, &topo, &out, &["--bump-revision=1000"]);
    assert_eq!(p["bump_revision"], 1000);
    assert!(
        p["warnings"].to_string().contains("r0 (etcd ")
            && p["warnings"]
                .to_string()
                .contains("need lifeboat installed"),
        "{}",
        p["warnings"]
    );
    // Without lifeboat, the script refuses the etcdutl fallback before anything else.
    let o = script(&out.join("r0.sh"), &path_without_lifeboat(bins));
    assert_exit(&o, 2);
    let e = one_line(&o);
    assert!(
        e.contains("this plan bumps the revision")
            && e.contains("install lifeboat on this node, or re-plan with --no-bump-revision"),
        "{e}"
    );
    let tool = bins.etcdutl.clone().unwrap_or(bins.etcdctl.clone());
    let o = apply(&out, "r0", &["--etcdutl", tool.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert!(one_line(&o).contains("cannot do (etcdutl 3.5.10+ can)"));
    assert!(!w.join("r0").exists(), "nothing written");
    // With lifeboat on PATH the same script restores (lifeboat's writer bumps).
    let o = script(&out.join("r0.sh"), &path_with_lifeboat(w));
    assert_exit(&o, 0);
    let r = start_from_plan(bins, &p);
    let now = {
        let out = r.ctl_ok(&["get", "/b/", "--prefix", "--limit=1", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    assert!(now > rev + 999, "revision {now} not bumped above {rev}");
    let old = r.ctl(&["get", "/b/00000001", &format!("--rev={rev}")]);
    assert!(
        !old.status.success() && stderr(&old).contains("compacted"),
        "{}",
        stderr(&old)
    );
    let v = r.ctl_ok(&["get", "/b/00000049", "--print-value-only"]);
    assert_eq!(v.trim(), "v".repeat(8));
}

#[test]
fn bump_on_etcd34_nodes() {
    bump_on_old_nodes(&etcd34(), "3.4");
}

#[test]
fn bump_on_etcd351_nodes() {
    bump_on_old_nodes(&etcd35(), "3.5.1");
}

/// On 3.5.16 nodes without lifeboat, the script's etcdutl fallback does the bump and writes
/// the plan's mark; run again, it is a no-op.
#[test]
fn bump_by_etcdutl_3516_fallback_and_mark() {
    let bins = etcd3516();
    let mut c = Cluster::single(&bins, Opts::default());
    c.fill("/b/", 20, 8);
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    c.stop(0);
    let work = TempDir::new().unwrap();
    let w = work.path();
    let topo = w.join("t.toml");
    std::fs::write(&topo, topology("3.5.16", "fallback", &w.join("r0"), w, 1)).unwrap();
    let out = w.join("plan");
    let p = plan(d, &topo, &out, &["--bump-revision=1000"]);
    assert!(p["warnings"].as_array().unwrap().is_empty(), "{p}");
    let snap = out.join("snapshot.db");
    let o = run_lifeboat([
        "fetch",
        "--from",
        d,
        m["id"].as_str().unwrap(),
        "--out",
        snap.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let path = path_without_lifeboat(&bins);
    let o = script(&out.join("r0.sh"), &path);
    assert_exit(&o, 0);
    let mark = std::fs::read_to_string(w.join("r0.lifeboat-restored")).unwrap();
    assert!(
        mark.contains("token=fallback") && mark.contains("written=20"),
        "{mark}"
    );
    let o = script(&out.join("r0.sh"), &path);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("already restored by this plan"));
    // lifeboat reads the script's mark as the same plan.
    let o = apply(&out, "r0", &["-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["already_restored"], true);
    let r = start_from_plan(&bins, &p);
    let v = r.ctl_ok(&["get", "/b/00000019", "--print-value-only"]);
    assert_eq!(v.trim(), "v".repeat(8));
}

/// The replace-member step-2 script with `runs_as = "command"` refuses while the member's
/// etcd runs (exit 1, its pid named), and moves the dir aside once it is stopped.
#[test]
fn replace_member_script_refuses_a_running_member() {
    let bins = etcd35();
    let mut c = Cluster::start(&bins, 3, Opts::default());
    c.put("/k", "v");
    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    let mut t = String::from("cluster_token = \"unused\"\n");
    for m in &c.members {
        t.push_str(&format!(
            "\n[[member]]\nname = \"{}\"\npeer_urls = [\"{}\"]\nclient_urls = [\"{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\nruns_as = \"command\"\n",
            m.name, m.peer_url, m.client_url, m.data_dir.display()
        ));
    }
    std::fs::write(&topo, t).unwrap();
    let out = work.path().join("replace");
    let eps = format!("{},{}", c.members[0].client_url, c.members[1].client_url);
    let o = run_lifeboat([
        "restore",
        "plan",
        "--mode",
        "replace-member",
        "--member",
        "m2",
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--endpoints",
        &eps,
    ]);
    assert_exit(&o, 0);
    let pid = c.members[2].pid().unwrap();
    let before = listing(c.data_dir(2));
    let o = script(&out.join("2-on-m2.sh"), "/usr/bin:/bin");
    assert_exit(&o, 1);
    let e = one_line(&o);
    assert!(
        e.contains(&format!("pid {pid} (etcd) holds its files"))
            && e.contains("stop the etcd process (SIGTERM)"),
        "{e}"
    );
    assert_eq!(listing(c.data_dir(2)), before, "nothing moved");
    c.stop(2);
    let o = script(&out.join("2-on-m2.sh"), "/usr/bin:/bin");
    assert_exit(&o, 0);
    assert!(!c.data_dir(2).exists(), "moved aside once stopped");
}

/// A backup damaged after the plan was made: the native writer decodes it straight into a
/// hidden file beside the data dir, so `restore apply` must refuse (exit 3) before it moves
/// the old data dir aside, and leave neither that file nor a staging dir behind.
#[test]
fn apply_refuses_a_backup_damaged_after_planning_and_moves_nothing() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill_random("/d/", 300, 200);
    let dest = TempDir::new().unwrap();
    backup_json(&c, dest.path(), &[]);
    let work = TempDir::new().unwrap();
    let w = work.path();
    let old = w.join("r0");
    std::fs::create_dir_all(old.join("member")).unwrap();
    std::fs::write(old.join("member/keep"), b"old data").unwrap();
    let topo = w.join("t.toml");
    std::fs::write(&topo, topology("3.5.1", "damaged", &old, w, 1)).unwrap();
    let plan_dir = w.join("plan");
    plan(
        dest.path().to_str().unwrap(),
        &topo,
        &plan_dir,
        &["--no-bump-revision"],
    );
    // Flip bytes inside the first frame (the seek table is at the end).
    let object = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".db.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 4;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&object, &bytes).unwrap();
    let before = listing(w);
    let o = apply(&plan_dir, "r0", &[]);
    assert_exit(&o, 3);
    let e = one_line(&o);
    assert!(
        e.contains("integrity problem in") && e.contains(".db.zst"),
        "{e}"
    );
    assert_eq!(
        listing(w),
        before,
        "nothing moved aside, nothing left behind"
    );
    assert_eq!(std::fs::read(old.join("member/keep")).unwrap(), b"old data");
}
