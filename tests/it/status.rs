//! `lifeboat status` (the doctor) against real clusters: healthy, one member down, NOSPACE.
use crate::common::native::etcd3516;
use crate::common::*;

fn status(c: &Cluster, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut args: Vec<String> = vec!["status".into(), "-o".into(), "json".into()];
    args.extend(c.conn_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run_lifeboat(&args);
    let j = json(&o);
    (o, j)
}

/// A single-member etcd of its own cluster, serving clients on `client_url`: a member
/// "from another cluster" (restored from another plan, an old data dir restarted). Killed
/// on drop.
struct Other {
    child: std::process::Child,
    _dir: TempDir,
}

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn other_cluster(bins: &Bins, client_url: &str) -> Other {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let other = spawn_other(bins, client_url, &peer, &format!("other={peer}"));
    // Bounded: serving within 30 s, or the test fails with the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = std::process::Command::new(&bins.etcdctl)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .args([
                &format!("--endpoints={client_url}"),
                "--dial-timeout=1s",
                "--command-timeout=2s",
                "endpoint",
                "health",
            ])
            .output()
            .unwrap();
        if o.status.success() {
            return other;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "etcd of another cluster at {client_url} not serving: {}",
            std::fs::read_to_string(other._dir.path().join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A member of a two-member cluster of its own whose other member never starts, on
/// `client_url` and `peer_url`: no leader, so its client URL answers nothing (as a member
/// restored from another plan, alone), but its peer URL says which cluster it is in.
fn leaderless_other(bins: &Bins, client_url: &str, peer_url: &str) -> Other {
    let absent = format!("http://127.0.0.1:{}", free_port());
    let other = spawn_other(
        bins,
        client_url,
        peer_url,
        &format!("other={peer_url},absent={absent}"),
    );
    let addr = peer_url.trim_start_matches("http://").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{peer_url} never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    other
}

fn spawn_other(bins: &Bins, client_url: &str, peer: &str, initial: &str) -> Other {
    let dir = TempDir::new().unwrap();
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = std::process::Command::new(&bins.etcd)
        .args([
            "--name=other".to_string(),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial}"),
            "--initial-cluster-token=another-cluster".to_string(),
            "--initial-cluster-state=new".to_string(),
            "--log-level=warn".to_string(),
        ])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Other { child, _dir: dir }
}

/// Findings of level error.
fn errors(j: &serde_json::Value) -> Vec<String> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "error")
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

/// What the advice for a member of another cluster must never say again.
fn assert_no_wrong_advice(j: &serde_json::Value) {
    let all = j["findings"].to_string();
    for wrong in [
        "frozen",
        "never started",
        "initial-cluster-state",
        "member-unreachable",
        "member-list-disagreement",
    ] {
        assert!(!all.contains(wrong), "{wrong}: {j:#}");
    }
}

fn checks(j: &serde_json::Value) -> Vec<String> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn healthy_cluster_then_one_member_stopped() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    c.fill("/s/", 200, 100);
    let (o, j) = status(&c, &[]);
    assert_exit(&o, 0);
    assert_eq!(j["healthy"], true, "{j:#}");
    let members = j["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["is_leader"] == true).count(), 1);
    assert!(members
        .iter()
        .all(|m| m["reachable"] == true && m["version"] == "3.5.1"));
    assert!(!checks(&j).iter().any(|c| c != "db-fragmented"), "{j:#}");
    // No --quota-bytes: each member's /metrics says (etcd's default here).
    assert_eq!(j["quota_source"], "metrics", "{j:#}");
    assert_eq!(j["quota_bytes"], 2147483648u64, "{j:#}");
    assert!(members.iter().all(|m| m["quota_bytes"] == 2147483648u64));

    // Stop a follower; ask only one live endpoint: the doctor finds the others itself.
    let leader = c.leader().unwrap();
    let follower = (0..3).find(|&i| i != leader).unwrap();
    c.stop(follower);
    let mut args: Vec<String> = vec!["status".into(), "-o".into(), "json".into()];
    args.push(format!("--endpoints={}", c.members[leader].client_url));
    args.push("--dial-timeout=1s".into());
    let o = run_lifeboat(&args);
    assert_exit(&o, 4);
    let j = json(&o);
    assert_eq!(j["healthy"], false);
    assert!(
        checks(&j).contains(&"member-unreachable".to_string()),
        "{j:#}"
    );
    assert!(!checks(&j).contains(&"quorum-lost".to_string()), "{j:#}");
    // The peer port was probed too: nothing listens there.
    assert!(
        j["findings"]
            .to_string()
            .contains("refuses connections too"),
        "{j:#}"
    );
    let down = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["reachable"] == false)
        .unwrap();
    assert_eq!(down["name"], c.members[follower].name);

    // Text output names the remedy.
    let mut targs = vec![
        "status".to_string(),
        format!("--endpoints={}", c.members[leader].client_url),
    ];
    targs.push("--dial-timeout=1s".into());
    let o = run_lifeboat(&targs);
    assert_exit(&o, 4);
    assert!(stdout(&o).contains("UNREACHABLE"), "{}", stdout(&o));
    assert!(stdout(&o).contains("fix:"));

    // A member of another cluster starts where the follower was (its client URL): one
    // finding that names it, its cluster id and the member expected there.
    let url = c.members[follower].client_url.clone();
    let _other = other_cluster(&c.bins, &url);
    let (o, j) = status(&c, &["--dial-timeout=1s"]);
    assert_exit(&o, 4);
    assert_eq!(errors(&j), vec!["cluster-id-mismatch"], "{j:#}");
    assert_no_wrong_advice(&j);
    let f = &j["findings"][0];
    let message = f["message"].as_str().unwrap();
    let other_row = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["other_cluster_id"].is_string())
        .unwrap_or_else(|| panic!("no row of another cluster: {j:#}"));
    assert_eq!(other_row["endpoint"], url.as_str());
    let cid = other_row["other_cluster_id"].as_str().unwrap();
    assert_ne!(j["cluster_id"].as_str(), Some(cid));
    assert!(
        message.contains(&url) && message.contains(&format!("of cluster {cid}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("({})", c.members[follower].name)),
        "{message}"
    );
    assert!(
        f["remedy"]
            .as_str()
            .unwrap()
            .contains(&format!("--node {}", c.members[follower].name)),
        "{f:#}"
    );
    assert_eq!(j["quorum"]["alive"], 2, "{j:#}");
    let mut targs = vec!["status".to_string(), "--dial-timeout=1s".into()];
    targs.extend(c.conn_args());
    let o = run_lifeboat(&targs);
    assert_exit(&o, 4);
    let text = stdout(&o);
    assert!(text.contains(&format!("OTHER CLUSTER {cid}")), "{text}");
    assert_eq!(text.matches("[ERROR]").count(), 1, "{text}");
    drop(_other);

    // The same member restored from another plan and alone there: no leader, so its
    // client URL answers nothing (it used to read "frozen ... overloaded"), but its peer
    // URL tells its cluster id: the same one finding.
    let peer = c.members[follower].peer_url.clone();
    let _other = leaderless_other(&c.bins, &url, &peer);
    let (o, j) = status(&c, &["--dial-timeout=1s", "--command-timeout=2s"]);
    assert_exit(&o, 4);
    assert_eq!(errors(&j), vec!["cluster-id-mismatch"], "{j:#}");
    assert_no_wrong_advice(&j);
    let message = j["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("its peer URL {peer} answers for cluster")),
        "{message}"
    );
    let row = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == c.members[follower].name.as_str())
        .unwrap();
    assert!(row["other_cluster_id"].is_string(), "{j:#}");
}

/// Two clusters' endpoints given together: the same one finding on 3.4.23 and 3.5.16
/// (3.5.1: above), whichever is taken as this cluster.
#[test]
fn endpoints_of_two_clusters() {
    for bins in [etcd34(), etcd3516()] {
        let a = Cluster::single(&bins, Opts::default());
        let b = Cluster::single(&bins, Opts::default());
        let eps = format!("--endpoints={},{}", a.endpoints(), b.endpoints());
        let o = run_lifeboat(["status", "-o", "json", &eps]);
        assert_exit(&o, 4);
        let j = json(&o);
        assert_eq!(
            errors(&j),
            vec!["cluster-id-mismatch"],
            "{}: {j:#}",
            bins.version
        );
        assert_no_wrong_advice(&j);
        let message = j["findings"][0]["message"].as_str().unwrap().to_string();
        assert!(message.contains(&b.endpoints()), "{message}");
        assert!(message.contains("lists no member at that URL"), "{message}");
        assert!(message.contains("no majority"), "{message}");
        let remedy = j["findings"][0]["remedy"].as_str().unwrap();
        assert!(remedy.contains("drop it from --endpoints"), "{remedy}");
        assert_eq!(j["members"].as_array().unwrap().len(), 2, "{j:#}");
    }
}

/// NOSPACE is one finding in words (no protobuf text, no "see the member's log" beside
/// it, not a second ERROR for the db size), and the quota comes from the member's /metrics.
#[test]
fn nospace_alarm_is_unhealthy() {
    for bins in [etcd35(), etcd3516(), etcd34()] {
        let c = Cluster::single(
            &bins,
            Opts {
                quota_backend_bytes: Some(2 * 1024 * 1024),
                ..Opts::default()
            },
        );
        c.fill_until_nospace(50_000);
        let (o, j) = status(&c, &[]);
        assert_exit(&o, 4);
        let v = bins.version;
        assert!(j["alarms"].to_string().contains("NOSPACE"), "{v}: {j:#}");
        assert_eq!(checks(&j), vec!["alarm-nospace"], "{v}: {j:#}");
        assert_eq!(j["quota_bytes"], 2097152, "{v}: {j:#}");
        assert_eq!(j["quota_source"], "metrics", "{v}: {j:#}");
        assert!(j["members"][0]["quota_used_pct"].as_f64().unwrap() > 90.0);
        let f = &j["findings"][0];
        assert!(f["remedy"].as_str().unwrap().contains("alarm disarm"));
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("of its 2.0 MiB quota"),
            "{f:#}"
        );
        let o = run_lifeboat(
            ["status".to_string()]
                .into_iter()
                .chain(c.conn_args())
                .collect::<Vec<_>>(),
        );
        assert_exit(&o, 4);
        let text = stdout(&o);
        assert_eq!(text.matches("[ERROR]").count(), 1, "{v}: {text}");
        for raw in ["memberID:", "alarm:NOSPACE", "member's log"] {
            assert!(!text.contains(raw), "{v}: {raw} in {text}");
        }
        assert!(
            text.contains("quota: 2.0 MiB (etcd_server_quota_backend_bytes"),
            "{text}"
        );
        // --quota-bytes still decides when given.
        let (_, j) = status(&c, &["--quota-bytes", "4M"]);
        assert_eq!(j["quota_source"], "flag");
        assert_eq!(j["quota_bytes"], 4194304);
    }
}

#[test]
fn nothing_answers_exits_1() {
    let port = free_port();
    let o = run_lifeboat([
        "status".to_string(),
        format!("--endpoints=127.0.0.1:{port}"),
        "--dial-timeout=500ms".into(),
    ]);
    assert_exit(&o, 1);
}

#[test]
fn tls_cluster_with_client_certs() {
    let tls = Tls::generate();
    let c = Cluster::start(
        &etcd35(),
        3,
        Opts {
            tls: Some(&tls),
            ..Opts::default()
        },
    );
    let (o, j) = status(&c, &[]);
    assert_exit(&o, 0);
    assert_eq!(j["members"].as_array().unwrap().len(), 3, "{j:#}");
    assert!(j["leader"].is_string());
    // The quota is read from /metrics over TLS with the same client certificate.
    assert_eq!(j["quota_source"], "metrics", "{j:#}");
}

#[test]
fn etcd34_cluster() {
    let mut c = Cluster::start(&etcd34(), 3, Opts::default());
    let (o, j) = status(&c, &[]);
    assert_exit(&o, 0);
    assert!(j["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["version"].as_str().unwrap().starts_with("3.4")));
    assert_eq!(j["quota_source"], "metrics", "{j:#}");
    // A follower's place taken by a leaderless etcd of another cluster: found through
    // its peer URL on 3.4 too.
    let leader = c.leader().unwrap();
    let f = (0..3).find(|&i| i != leader).unwrap();
    c.stop(f);
    let (url, peer) = (
        c.members[f].client_url.clone(),
        c.members[f].peer_url.clone(),
    );
    let _other = leaderless_other(&c.bins, &url, &peer);
    let (o, j) = status(&c, &["--dial-timeout=1s", "--command-timeout=2s"]);
    assert_exit(&o, 4);
    assert_eq!(errors(&j), vec!["cluster-id-mismatch"], "{j:#}");
    assert_no_wrong_advice(&j);
}
