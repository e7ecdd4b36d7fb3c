//! Restore drills on real etcd (3.4.23, 3.5.1, 3.5.16): a 3-member cluster with ~10k keys,
//! leases, deletes and a compaction is backed up and SIGKILLed; `restore plan` and `restore
//! apply` for every node; the members start with the plan's flags alone. Plus the plan's
//! validation failures and the scripts' refusals.
use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::restore::*;
use crate::common::store::*;
use crate::common::*;

fn revision_of(c: &Cluster) -> i64 {
    let out = c.ctl_ok(&["get", "/", "--prefix", "--limit=1", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

fn kvs(c: &Cluster) -> serde_json::Value {
    let out = c.ctl_ok(&["get", "/drill/", "--prefix", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kvs"].clone()
}

/// A topology for the restored cluster: new ports, the old data dirs; https peers with the
/// test CA's server certificate when `peer_tls` is given.
fn topology(c: &Cluster, version: &str, token: &str, peer_tls: Option<&Tls>) -> String {
    let scheme = if peer_tls.is_some() { "https" } else { "http" };
    let mut t = format!(
        "cluster_token = \"{token}\"\nold_cluster_token = \"{}\"\netcd_version = \"{version}\"\n",
        c.token
    );
    for (i, m) in c.members.iter().enumerate() {
        t.push_str(&format!(
            "\n[[member]]\nname = \"r{i}\"\npeer_urls = [\"{scheme}://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            free_port(),
            free_port(),
            m.data_dir.display()
        ));
        if let Some(tls) = peer_tls {
            t.push_str(&format!(
                "peer_cert_file = \"{}\"\npeer_key_file = \"{}\"\npeer_trusted_ca_file = \"{}\"\n",
                tls.server_cert.display(),
                tls.server_key.display(),
                tls.ca.display()
            ));
        }
    }
    t
}

fn hex_id(v: &serde_json::Value) -> String {
    format!("{:x}", v.as_u64().unwrap())
}

/// The whole drill for one etcd release; `bump`: plan with `--bump-revision`; `peer_tls`:
/// the restored members talk https to each other (client-certificate checked).
/// How the drill writes the members' data dirs.
#[derive(Clone, Copy, PartialEq)]
enum Writer {
    /// lifeboat's own writer, with no etcd tool on PATH at all.
    Native,
    /// etcd's tool (etcdutl for 3.5, etcdctl for 3.4), given with --etcdutl.
    EtcdTool,
}

fn drill(bins: &Bins, version: &str, bump: bool, peer_tls: Option<&Tls>, writer: Writer) {
    let mut c = Cluster::start(bins, 3, Opts::default());
    c.fill("/drill/", 10_000, 40);
    let lease = c.ctl_ok(&["lease", "grant", "3600"]);
    let lease = lease.split_whitespace().nth(1).unwrap().to_string();
    c.ctl_ok(&["put", &format!("--lease={lease}"), "/drill/leased", "x"]);
    c.ctl_ok(&["del", "/drill/0000001", "--prefix"]);
    c.put("/drill/00000020", "second");
    let compact_at = revision_of(&c);
    c.ctl_ok(&["compact", &compact_at.to_string()]);
    c.put("/drill/00000021", "after-compaction");
    let before = kvs(&c);
    let rev = revision_of(&c);
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    assert_eq!(m["revision"].as_i64(), Some(rev));
    let ins = run_lifeboat(["inspect", &format!("{d}:latest"), "-o", "json"]);
    assert_exit(&ins, 0);
    let backup_hash = json(&ins)["hashkv"].as_u64().unwrap();
    for i in 0..3 {
        c.kill(i);
    }

    let work = TempDir::new().unwrap();
    let topo = work.path().join("topology.toml");
    std::fs::write(&topo, topology(&c, version, "generate", peer_tls)).unwrap();
    let plan_dir = work.path().join("plan");
    let mut args = vec![
        "restore".to_string(),
        "plan".into(),
        "--from".into(),
        d.into(),
        "--topology".into(),
        topo.display().to_string(),
        "--out".into(),
        plan_dir.display().to_string(),
        "-o".into(),
        "json".into(),
    ];
    args.push(if bump {
        "--bump-revision=1000000".into()
    } else {
        "--no-bump-revision".into()
    });
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    let plan = json(&o);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plan_dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan, on_disk);
    assert!(plan_dir.join("RUNBOOK.md").is_file());
    assert_eq!(plan["backup_id"], m["id"]);
    assert_eq!(plan["revision"].as_i64(), Some(rev));

    let tool = bins.etcdutl.clone().unwrap_or(bins.etcdctl.clone());
    let empty_path = TempDir::new().unwrap();
    for i in 0..3 {
        let node = format!("r{i}");
        let mut args = vec![
            "restore",
            "apply",
            "--plan",
            plan_dir.to_str().unwrap(),
            "--node",
            &node,
            "-o",
            "json",
        ];
        if writer == Writer::EtcdTool {
            args.extend(["--etcdutl", tool.to_str().unwrap()]);
        }
        // The native writer needs no etcd tool: run with a PATH that has none.
        let o = std::process::Command::new(lifeboat())
            .args(&args)
            .env("PATH", empty_path.path())
            .env_remove("ETCDCTL_ENDPOINTS")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let steps = json(&o)["steps"].to_string();
        assert_eq!(
            steps.contains("native writer"),
            writer == Writer::Native,
            "{steps}"
        );
        let r = json(&o);
        assert_eq!(r["member_id"], plan["members"][i]["member_id"]);
        let aside = r["moved_aside"].as_str().expect("old data dir moved aside");
        assert!(Path::new(aside).join("member/wal").is_dir(), "{aside}");
    }
    if peer_tls.is_some() {
        let flags = plan["members"][0]["etcd_flags"].to_string();
        assert!(
            flags.contains("--peer-cert-file=") && flags.contains("--peer-client-cert-auth"),
            "{flags}"
        );
    }
    let r = start_from_plan(bins, &plan);

    // One leader, the plan's ids.
    let leaders: Vec<usize> = (0..3)
        .filter(|&i| {
            let s = r.status_of(i).unwrap();
            s["Status"]["header"]["member_id"] == s["Status"]["leader"]
        })
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    let list: serde_json::Value =
        serde_json::from_str(&r.ctl_ok(&["member", "list", "-w", "json"])).unwrap();
    assert_eq!(
        hex_id(&list["header"]["cluster_id"]),
        plan["cluster_id"].as_str().unwrap()
    );
    let mut got: Vec<String> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| hex_id(&m["ID"]))
        .collect();
    let mut want: Vec<String> = plan["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    if bump {
        let now = revision_of(&r);
        assert!(now > rev + 999_999, "revision {now} not bumped above {rev}");
        let old = r.ctl(&["get", "/drill/00000021", &format!("--rev={rev}")]);
        assert!(
            !old.status.success() && stderr(&old).contains("compacted"),
            "{}",
            stderr(&old)
        );
        let after = kvs(&r);
        assert_eq!(
            after.as_array().unwrap().len(),
            before.as_array().unwrap().len()
        );
        for (a, b) in after
            .as_array()
            .unwrap()
            .iter()
            .zip(before.as_array().unwrap())
        {
            assert_eq!((&a["key"], &a["value"]), (&b["key"], &b["value"]));
        }
    } else {
        assert_eq!(revision_of(&r), rev);
        let hk = r.ctl_ok(&["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"]);
        let hk: serde_json::Value = serde_json::from_str(&hk).unwrap();
        let hashes: Vec<u64> = hk
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["HashKV"]["hash"].as_u64().unwrap())
            .collect();
        assert_eq!(
            hashes,
            vec![backup_hash; 3],
            "hashkv at {rev} on every member equals the backup's"
        );
        assert_eq!(kvs(&r), before, "every key with its original revisions");
    }

    // The RUNBOOK's last step: the cluster is the plan's and holds the backup's data.
    let o = run_lifeboat([
        "restore",
        "check",
        "--plan",
        plan_dir.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["hashkv"], plan["expected_hashkv"]);
    if !bump {
        assert_eq!(json(&o)["hashkv"].as_u64(), Some(backup_hash));
    }
}

#[test]
fn drill_etcd35_https_peers() {
    let tls = Tls::generate();
    drill(&etcd35(), "3.5.1", false, Some(&tls), Writer::Native);
}

#[test]
fn drill_etcd34() {
    drill(&etcd34(), "3.4", false, None, Writer::EtcdTool);
}

#[test]
fn drill_etcd3516_with_revision_bump() {
    drill(&etcd3516(), "3.5.16", true, None, Writer::Native);
}

/// Problems in a topology name the key and the line, exit 2, and nothing is written.
#[test]
fn plan_validation_failures_and_script_refusals() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    c.put("/registry/pods/default/web-1", "pod");
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    backup_json(&c, dest.path(), &[]);
    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    let out = work.path().join("plan");
    let good = "cluster_token = \"new\"\nold_cluster_token = \"old\"\netcd_version = \"3.5.1\"\n\n[[member]]\nname = \"a\"\npeer_urls = [\"http://127.0.0.1:2380\"]\nclient_urls = [\"http://127.0.0.1:2379\"]\ndata_dir = \"/tmp/lifeboat-restore-test-a\"\nhost = \"no-such-host.invalid\"\n\n[[member]]\nname = \"b\"\npeer_urls = [\"http://127.0.0.1:2480\"]\nclient_urls = [\"http://127.0.0.1:2479\"]\ndata_dir = \"/tmp/lifeboat-restore-test-b\"\nhost = \"no-such-host.invalid\"\n\n[[member]]\nname = \"c\"\npeer_urls = [\"http://127.0.0.1:2580\"]\nclient_urls = [\"http://127.0.0.1:2579\"]\ndata_dir = \"/tmp/lifeboat-restore-test-c\"\nhost = \"no-such-host.invalid\"\n";
    let plan = |t: &str| {
        std::fs::write(&topo, t).unwrap();
        run_lifeboat([
            "restore",
            "plan",
            "--from",
            d,
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-bump-revision",
        ])
    };
    let cases = [
        (good.replace("2480", "2380"), "line 14, member[1].peer_urls: http://127.0.0.1:2380 is also a peer URL of \"a\" (line 6)"),
        (good.replace("\"new\"", "\"old\""), "line 1, cluster_token: \"old\" is the old cluster's token"),
        (good.replace("\"/tmp/lifeboat-restore-test-c\"", "\"etcd-c\""), "line 23, member[2].data_dir: \"etcd-c\" is not an absolute path"),
        (good.replace("\"3.5.1\"", "\"3.4\""), "cannot restore backup"),
    ];
    for (t, want) in cases {
        let o = plan(&t);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(want), "want {want:?} in {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(!out.exists(), "nothing written on a bad topology");
    }
    // Kubernetes keys turn the revision bump on. etcd 3.5.1's etcdutl cannot bump, but
    // lifeboat's writer can: the plan is valid, and says which nodes need lifeboat.
    std::fs::write(&topo, good).unwrap();
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from",
        d,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["bump_revision"], 1_000_000_000);
    assert!(
        p["warnings"]
            .to_string()
            .contains("a (etcd 3.5.1), b (etcd 3.5.1), c (etcd 3.5.1) need lifeboat installed"),
        "{p}"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&topo, good.replace("3.5.1", "3.5.16")).unwrap();
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from",
        d,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["bump_revision"], 1_000_000_000);
    assert!(std::fs::read_to_string(out.join("a.sh"))
        .unwrap()
        .contains("'--bump-revision=1000000000' '--mark-compacted'"));
    std::fs::remove_dir_all(&out).unwrap();
    let o = plan(good);
    assert_exit(&o, 0);
    assert!(out.join("a.sh").is_file());
    // A second plan over the first is refused (the token in use must not change).
    assert_exit(&plan(good), 2);

    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        out.to_str().unwrap(),
        "--node",
        "x",
    ]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("no member \"x\" in the plan (members: a, b, c)"),
        "{}",
        stderr(&o)
    );
    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        out.to_str().unwrap(),
        "--node",
        "a",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["dry_run"], true);
    assert!(!Path::new("/tmp/lifeboat-restore-test-a").exists());

    // The script refuses the wrong host, and a non-empty data dir.
    let o = Command::new("bash").arg(out.join("a.sh")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("run it on no-such-host.invalid"),
        "{}",
        stderr(&o)
    );
    let busy = work.path().join("busy");
    std::fs::create_dir_all(busy.join("member")).unwrap();
    let script = std::fs::read_to_string(out.join("b.sh")).unwrap().replace(
        "'/tmp/lifeboat-restore-test-b'",
        &format!("'{}'", busy.display()),
    );
    std::fs::write(work.path().join("b.sh"), script).unwrap();
    let o = Command::new("bash")
        .arg(work.path().join("b.sh"))
        .env("LIFEBOAT_SKIP_HOST_CHECK", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not empty; move it aside first"),
        "{}",
        stderr(&o)
    );
    assert!(busy.join("member").is_dir());
}

/// `restore test` boots a good backup and checks it (0); a damaged one is refused (3).
#[test]
fn restore_test_good_and_damaged() {
    let bins = etcd35();
    let c = Cluster::single(&bins, Opts::default());
    c.fill("/t/", 300, 20);
    c.ctl_ok(&["del", "/t/0000000", "--prefix"]);
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    let recorded = m["hashkv"].as_u64().expect("manifest records hashkv");
    let etcd = bins.etcd.to_str().unwrap();
    let o = run_lifeboat(["restore", "test", "--from", d, "--etcd", etcd, "-o", "json"]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["hashkv"].as_u64(), Some(recorded));
    assert_eq!(r["keys"].as_u64(), Some(290));
    let live = c.ctl_ok(&["endpoint", "hashkv", "-w", "json"]);
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(live[0]["HashKV"]["hash"].as_u64(), Some(recorded));

    let obj = data_object(dest.path());
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&obj, bytes).unwrap();
    let o = run_lifeboat([
        "restore",
        "test",
        "--from",
        &format!("{d}:latest"),
        "--etcd",
        etcd,
    ]);
    assert_exit(&o, 3);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// No backup: plan from a surviving member's data dir; the hash check is skipped and said so.
#[test]
fn plan_from_a_surviving_member_data_dir() {
    let bins = etcd35();
    let mut c = Cluster::single(&bins, Opts::default());
    c.fill("/drill/", 200, 10);
    let before = kvs(&c);
    c.stop(0);
    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    std::fs::write(
        &topo,
        format!(
            "cluster_token = \"after-loss\"\netcd_version = \"3.5.1\"\n\n[[member]]\nname = \"solo\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\n",
            free_port(),
            free_port(),
            work.path().join("restored").display()
        ),
    )
    .unwrap();
    let out = work.path().join("plan");
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from-data-dir",
        c.data_dir(0).to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let plan = json(&o);
    assert_eq!(plan["hash_check_skipped"], true);
    assert!(plan["warnings"][0]
        .as_str()
        .unwrap()
        .contains("hash check is skipped"));
    assert!(std::fs::read_to_string(out.join("solo.sh"))
        .unwrap()
        .contains("'--skip-hash-check'"));
    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        out.to_str().unwrap(),
        "--node",
        "solo",
        "--etcdutl",
        bins.etcdutl.as_ref().unwrap().to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let r = start_from_plan(&bins, &plan);
    assert_eq!(kvs(&r), before);
}

/// One member's WAL is corrupt in a healthy cluster: `--mode replace-member` writes the steps
/// with the live values, and following them the member rejoins and syncs.
#[test]
fn replace_member_with_a_corrupt_wal() {
    let bins = etcd35();
    let mut c = Cluster::start(&bins, 3, Opts::default());
    c.fill("/drill/", 300, 10);
    c.stop(2);
    // Damage a record in the middle of m2's first WAL segment.
    let wal = c.data_dir(2).join("member/wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .min()
        .unwrap();
    let used = run_lifeboat([
        "check-member",
        "-o",
        "json",
        c.data_dir(2).to_str().unwrap(),
    ]);
    let end = json(&used)["members"][0]["wal_bytes"].as_u64().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = (end / 2) as usize;
    bytes[at] ^= 0x55;
    std::fs::write(&seg, bytes).unwrap();
    let o = run_lifeboat([
        "check-member",
        "-o",
        "json",
        c.data_dir(2).to_str().unwrap(),
    ]);
    assert_exit(&o, 3);

    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    let mut t = String::from("cluster_token = \"unused\"\n");
    for m in &c.members {
        t.push_str(&format!(
            "\n[[member]]\nname = \"{}\"\npeer_urls = [\"{}\"]\nclient_urls = [\"{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
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
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(
        p["peer_urls"][0].as_str(),
        Some(c.members[2].peer_url.as_str())
    );
    let path = format!(
        "{}:{}",
        bins.etcdctl.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for script in ["1-on-a-healthy-member.sh", "2-on-m2.sh"] {
        let o = Command::new("bash")
            .arg(out.join(script))
            .env("PATH", &path)
            .env("LIFEBOAT_SKIP_HOST_CHECK", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}{}", stdout(&o), stderr(&o));
    }
    assert!(
        !c.data_dir(2).exists(),
        "the broken data dir was moved aside"
    );
    c.restart_existing(2);
    c.wait_healthy(std::time::Duration::from_secs(60));
    let list: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let names: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"m2"), "{names:?}");
    let o = c.ctl_at(
        &c.members[2].client_url,
        &["get", "/drill/00000299", "--print-value-only"],
    );
    assert_eq!(stdout(&o).trim(), "v".repeat(10));
    let o = Command::new("bash")
        .arg(out.join("3-check.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The DR drill on the etcd Kubernetes 1.34+ runs, and on 3.7 (plain and bumped).
#[test]
fn drill_etcd36_plain_and_with_revision_bump() {
    let b = common::versions::etcd36();
    drill(&b, "3.6.16", false, None, Writer::Native);
    drill(&b, "3.6.16", true, None, Writer::Native);
}

#[test]
fn drill_etcd37_plain_and_with_revision_bump() {
    let b = common::versions::etcd37();
    drill(&b, "3.7.3", false, None, Writer::Native);
    drill(&b, "3.7.3", true, None, Writer::Native);
}

/// The commands RUNBOOK.md gives an operator without lifeboat on the node, run exactly as
/// written for a member whose data dir has a space in its name (etcd 3.5.1): step 2's
/// `mv` aside, step 3's `etcdutl snapshot restore` (on the fetched snapshot) and step 4's
/// `etcd …` command line; then `restore check` finds the plan's cluster with the backup.
#[test]
fn runbook_commands_run_as_written_for_a_data_dir_with_a_space() {
    let bins = etcd35();
    let etcdutl = bins.etcdutl.clone().expect("etcd 3.5.1 ships etcdutl");
    let src = Cluster::single(&bins, Opts::default());
    for i in 0..50 {
        src.put(&format!("/runbook/{i:03}"), "v");
    }
    let dest = TempDir::new().unwrap();
    let m = backup_json(&src, dest.path(), &[]);
    drop(src);

    let work = TempDir::new().unwrap();
    let data_dir = work.path().join("etcd data");
    std::fs::create_dir_all(data_dir.join("member")).unwrap();
    std::fs::write(data_dir.join("member/old"), "the old member's files").unwrap();
    let topo = work.path().join("topology.toml");
    std::fs::write(
        &topo,
        format!(
            "cluster_token = \"runbook-space\"\netcd_version = \"3.5.1\"\n\n[[member]]\nname = \"r0\"\nhost = \"127.0.0.1\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\n",
            free_port(),
            free_port(),
            data_dir.display()
        ),
    )
    .unwrap();
    let plan_dir = work.path().join("plan");
    let plan = make_plan(dest.path(), &topo, &plan_dir, &["--no-bump-revision"]);
    let runbook = std::fs::read_to_string(plan_dir.join("RUNBOOK.md")).unwrap();
    let code = |line: &str, after: &str| -> String {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest[..rest.find('`').unwrap()].to_string()
    };
    let bash = |cmd: &str, path: &str| {
        let o = Command::new("bash")
            .arg("-c")
            .arg(cmd)
            .current_dir(&plan_dir)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let sys_path = std::env::var("PATH").unwrap_or_default();

    // Step 2: move the old data dir aside.
    let mv = runbook
        .lines()
        .find(|l| l.starts_with("- on 127.0.0.1: `mv "))
        .expect("step 2's mv line");
    bash(&code(mv, "`"), &sys_path);
    assert!(!data_dir.exists(), "{mv}");
    let aside: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("etcd data.before-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{mv}");
    assert!(aside[0].path().join("member/old").is_file());

    // Step 3, without lifeboat: the fetched snapshot and etcd's own tool.
    let o = run_lifeboat([
        "fetch",
        "--from",
        dest.path().to_str().unwrap(),
        m["id"].as_str().unwrap(),
        "--out",
        plan_dir.join("snapshot.db").to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let restore = runbook
        .lines()
        .find(|l| l.starts_with("- on 127.0.0.1: `./r0.sh`, or `"))
        .expect("step 3's restore command");
    let cmd = code(restore, ", or `");
    assert!(cmd.starts_with("etcdutl snapshot restore "), "{cmd}");
    let tools = format!("{}:{sys_path}", etcdutl.parent().unwrap().display());
    bash(&cmd, &tools);
    assert!(data_dir.join("member/wal").is_dir(), "{cmd}");

    // Step 4: etcd with exactly the printed flags.
    let start = runbook
        .lines()
        .find_map(|l| l.strip_prefix("  etcd "))
        .expect("step 4's etcd command line");
    let mut etcd = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec {} {start}",
            lifeboat::restore::runbook::sh_quote(&bins.etcd.display().to_string())
        ))
        .current_dir(work.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = plan["members"][0]["client_urls"][0].as_str().unwrap();
    let t0 = std::time::Instant::now();
    let ready = loop {
        let o = Command::new(&bins.etcdctl)
            .env("ETCDCTL_API", "3")
            .args([&format!("--endpoints={client}"), "endpoint", "health"])
            .output()
            .unwrap();
        if o.status.success() || t0.elapsed() > std::time::Duration::from_secs(30) {
            break o.status.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let check = run_lifeboat(["restore", "check", "--plan", plan_dir.to_str().unwrap()]);
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert!(ready, "etcd {start} did not become healthy");
    assert_exit(&check, 0);
}
