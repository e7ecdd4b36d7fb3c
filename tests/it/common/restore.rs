//! Restore drills: etcd 3.5.16 (Debian trixie, has `--bump-revision`), and starting a
//! cluster from a restore plan's own flags.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use super::{assert_exit, free_port, json, lifeboat, run_lifeboat, Bins, Cluster, Member, TempDir};

/// etcd 3.5.16 unpacked by scripts/etcd-trixie.sh (LIFEBOAT_ETCD3516_DIR overrides).
pub fn etcd3516() -> Bins {
    let dir = std::env::var_os("LIFEBOAT_ETCD3516_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("LIFEBOAT_ETCD_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("lifeboat"))
                })
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lifeboat")
                });
            cache.join("etcd-trixie/usr/bin")
        });
    let hint = "run scripts/setup.sh (scripts/etcd-trixie.sh unpacks etcd 3.5.16)";
    Bins {
        version: "3.5.16",
        etcd: super::check_bin(dir.join("etcd"), hint),
        etcdctl: super::check_bin(dir.join("etcdctl"), hint),
        etcdutl: Some(super::check_bin(dir.join("etcdutl"), hint)),
    }
}

/// Start every member of `plan.json` with exactly the plan's `etcd_flags` (plus logging),
/// and wait until the cluster is healthy.
pub fn start_from_plan(bins: &Bins, plan: &serde_json::Value) -> Cluster {
    start_from_plan_with(bins, plan, false)
}

/// [`start_from_plan`] for a cluster with auth on (`auth`): waits for a leader only.
pub fn start_from_plan_with(bins: &Bins, plan: &serde_json::Value, auth: bool) -> Cluster {
    let dir = TempDir::new().unwrap();
    let mut members = Vec::new();
    for m in plan["members"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        let mut args: Vec<String> = m["etcd_flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        args.push("--logger=zap".into());
        args.push("--log-level=warn".into());
        members.push(Member {
            log: dir.path().join(format!("{name}.log")),
            client_url: m["client_urls"][0].as_str().unwrap().to_string(),
            peer_url: m["peer_urls"][0].as_str().unwrap().to_string(),
            data_dir: PathBuf::from(m["data_dir"].as_str().unwrap()),
            name,
            child: None,
            args,
            etcd: bins.etcd.clone(),
        });
    }
    let n = members.len();
    let mut c = Cluster {
        bins: bins.clone(),
        dir,
        members,
        token: plan["cluster_token"].as_str().unwrap().to_string(),
        tls: None,
    };
    for i in 0..n {
        c.spawn(i);
    }
    if auth {
        // `endpoint health` needs credentials once auth is on, and so does `endpoint status`
        // from etcd 3.6: wait for a leader, asking as root.
        let start = std::time::Instant::now();
        let user = format!("--user=root:{ROOT_PW}");
        while c.leader_as(&[&user]).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no leader after 60s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        c.wait_healthy(Duration::from_secs(60));
    }
    c
}

/// root's password in the auth-enabled drills.
pub const ROOT_PW: &str = "root-pw-16";

/// etcdctl as root against every running member, which must succeed.
#[track_caller]
pub fn ctl_root(c: &Cluster, args: &[&str]) -> String {
    let user = format!("--user=root:{ROOT_PW}");
    let mut all = vec![user.as_str()];
    all.extend_from_slice(args);
    c.ctl_ok(&all)
}

/// A source cluster for the auth-enabled drills, backed up and then killed (every member
/// SIGKILLed: the quorum is lost for good).
pub struct AuthSource {
    pub cluster: Cluster,
    pub dest: TempDir,
    pub manifest: serde_json::Value,
    /// Live keys at the backup.
    pub keys: u64,
}

/// A 3-member cluster with users and roles (root, a reader), auth enabled, three leases
/// with keys, a few thousand keys, deletes and a compaction; backed up with `--user`.
/// Call [`AuthSource::kill`] when the test is ready to lose it.
pub fn auth_source(bins: &Bins) -> AuthSource {
    let c = Cluster::start(bins, 3, super::Opts::default());
    c.fill("/drill/", 3_000, 40);
    c.ctl_ok(&["del", "/drill/0000001", "--prefix"]);
    c.put("/drill/00000020", "second");
    for i in 0..3 {
        let lease = c.ctl_ok(&["lease", "grant", "3600"]);
        let lease = lease.split_whitespace().nth(1).unwrap().to_string();
        for k in 0..5 {
            c.ctl_ok(&[
                "put",
                &format!("--lease={lease}"),
                &format!("/leased/{i}/{k}"),
                "x",
            ]);
        }
    }
    let rev: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["get", "/", "--prefix", "--limit=1", "-w", "json"]))
            .unwrap();
    let rev = rev["header"]["revision"].as_i64().unwrap();
    c.ctl_ok(&["compact", &rev.to_string()]);
    c.put("/drill/00000021", "after-compaction");
    c.ctl_ok(&["user", "add", &format!("root:{ROOT_PW}")]);
    c.ctl_ok(&["role", "add", "reader"]);
    c.ctl_ok(&[
        "role",
        "grant-permission",
        "reader",
        "read",
        "/drill/",
        "--prefix=true",
    ]);
    c.ctl_ok(&["user", "add", "alice:alice-pw"]);
    c.ctl_ok(&["user", "grant-role", "alice", "reader"]);
    c.ctl_ok(&["auth", "enable"]);
    let count: serde_json::Value = serde_json::from_str(&ctl_root(
        &c,
        &["get", "", "--from-key", "--limit=1", "-w", "json"],
    ))
    .unwrap();
    let keys = count["count"].as_u64().unwrap();
    let dest = TempDir::new().unwrap();
    let manifest =
        super::store::backup_json(&c, dest.path(), &["--user", &format!("root:{ROOT_PW}")]);
    AuthSource {
        cluster: c,
        dest,
        manifest,
        keys,
    }
}

impl AuthSource {
    pub fn kill(&mut self) {
        for i in 0..self.cluster.members.len() {
            self.cluster.kill(i);
        }
    }
}

/// A topology for the restored cluster: new ports, the old members' data dirs, names
/// r0, r1, ...
pub fn restore_topology(c: &Cluster, version: &str) -> String {
    let mut t = format!(
        "cluster_token = \"generate\"\nold_cluster_token = \"{}\"\netcd_version = \"{version}\"\n",
        c.token
    );
    for (i, m) in c.members.iter().enumerate() {
        t.push_str(&format!(
            "\n[[member]]\nname = \"r{i}\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            free_port(),
            free_port(),
            m.data_dir.display()
        ));
    }
    t
}

/// `restore plan --from DEST --topology FILE --out DIR -o json` (plus `extra`), which must
/// succeed; returns plan.json.
pub fn make_plan(dest: &Path, topology: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "restore".to_string(),
        "plan".into(),
        "--from".into(),
        dest.display().to_string(),
        "--topology".into(),
        topology.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    json(&o)
}

/// `restore apply --plan DIR --node NAME` for every member of the plan.
pub fn apply_all(plan_dir: &Path, plan: &serde_json::Value) {
    for m in plan["members"].as_array().unwrap() {
        let o = run_lifeboat([
            "restore",
            "apply",
            "--plan",
            plan_dir.to_str().unwrap(),
            "--node",
            m["name"].as_str().unwrap(),
        ]);
        assert_exit(&o, 0);
    }
}

/// `lifeboat restore check --plan DIR -o json` with `extra` flags.
pub fn restore_check(plan_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "restore".to_string(),
        "check".into(),
        "--plan".into(),
        plan_dir.display().to_string(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run_lifeboat(&args)
}

/// The indented command line of RUNBOOK.md that contains `needle`.
pub fn runbook_command(plan_dir: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(plan_dir.join("RUNBOOK.md")).unwrap();
    text.lines()
        .find(|l| l.starts_with("    ") && l.contains(needle))
        .unwrap_or_else(|| panic!("no command with {needle:?} in RUNBOOK.md:\n{text}"))
        .trim()
        .to_string()
}

/// Run a RUNBOOK command with bash in the plan directory, with lifeboat on PATH.
pub fn run_runbook_command(plan_dir: &Path, cmd: &str, env: &[(&str, &str)]) -> Output {
    let bin_dir = lifeboat().parent().unwrap().to_path_buf();
    let mut c = std::process::Command::new("bash");
    c.arg("-c")
        .arg(cmd)
        .current_dir(plan_dir)
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}
