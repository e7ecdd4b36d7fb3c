//! `lifeboat status` (the doctor) against real clusters: healthy, one member down, NOSPACE.
mod common;
use common::*;

fn status(c: &Cluster, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut args: Vec<String> = vec!["status".into(), "-o".into(), "json".into()];
    args.extend(c.conn_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run_lifeboat(&args);
    let j = json(&o);
    (o, j)
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
}

#[test]
fn nospace_alarm_is_unhealthy() {
    let c = Cluster::single(
        &etcd35(),
        Opts {
            quota_backend_bytes: Some(2 * 1024 * 1024),
            ..Opts::default()
        },
    );
    c.fill_until_nospace(50_000);
    let (o, j) = status(&c, &["--quota-bytes", "2097152"]);
    assert_exit(&o, 4);
    assert!(j["alarms"].to_string().contains("NOSPACE"), "{j:#}");
    let cs = checks(&j);
    assert!(cs.contains(&"alarm-nospace".to_string()), "{j:#}");
    assert!(cs.contains(&"db-near-quota".to_string()), "{j:#}");
    let f = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "alarm-nospace")
        .unwrap();
    assert!(f["remedy"].as_str().unwrap().contains("alarm disarm"));
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
}

#[test]
fn etcd34_cluster() {
    let c = Cluster::start(&etcd34(), 3, Opts::default());
    let (o, j) = status(&c, &[]);
    assert_exit(&o, 0);
    assert!(j["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["version"].as_str().unwrap().starts_with("3.4")));
}
