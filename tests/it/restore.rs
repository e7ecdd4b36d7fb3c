//! Restore drills on real etcd (3.4.23, 3.5.1, 3.5.16): a 3-member cluster with ~10k keys,
//! leases, deletes and a compaction is backed up and SIGKILLed; `restore plan` and `restore
//! apply` for every node; the members start with the plan's flags alone. The plan's
//! validation failures and the scripts' refusals are in `refusals`, restores from a
//! surviving member and a member replacement in `members`.
use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::restore::*;
use crate::common::store::*;
use crate::common::*;

mod members;
mod refusals;

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
