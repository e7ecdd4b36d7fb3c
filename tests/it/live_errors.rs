//! Errors an operator can act on, against real etcd servers: TLS and certificate mistakes,
//! auth, bad endpoints, unreadable files, a frozen member (SIGSTOP), quorum loss. Each
//! failure is one line naming the flag, file or endpoint to fix, with the right exit code.
use crate::common::live::{open_to_nobody, Frozen, TlsNoIpSan};
use crate::common::*;

/// The error line: the last line on stderr. Asserts it says nothing twice-wrapped, no
/// Debug output, and that it is the only line that mentions the error.
#[track_caller]
fn error_line(o: &std::process::Output) -> String {
    let err = stderr(o);
    let line = err.lines().last().unwrap_or_default().to_string();
    for bad in [
        "transport error: transport error",
        "Status {",
        "source: Some",
        "Custom {",
        "kind: ",
        "tonic::",
    ] {
        assert!(!err.contains(bad), "Debug or noise ({bad}) in:\n{err}");
    }
    line
}

#[track_caller]
fn contains_all(line: &str, words: &[&str]) {
    for w in words {
        assert!(line.contains(w), "{w:?} missing from: {line}");
    }
}

fn tls_cluster(tls: &Tls) -> Cluster {
    Cluster::single(
        &etcd35(),
        Opts {
            tls: Some(tls),
            ..Opts::default()
        },
    )
}

fn status_with(args: &[String]) -> std::process::Output {
    let mut a = vec!["status".to_string(), "--endpoints-only".to_string()];
    a.extend(args.iter().cloned());
    run_lifeboat(&a)
}

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn tls_mistakes_are_named() {
    let tls = Tls::generate();
    let other = Tls::generate();
    let c = tls_cluster(&tls);
    let ep = c.members[0].client_url.clone();
    let hostport = ep.trim_start_matches("https://").to_string();

    // Wrong CA: the server's certificate is not signed by --cacert.
    let o = status_with(&[
        format!("--endpoints={ep}"),
        format!("--cacert={}", s(&other.ca)),
        format!("--cert={}", s(&tls.client_cert)),
        format!("--key={}", s(&tls.client_key)),
    ]);
    assert_exit(&o, 1);
    let l = error_line(&o);
    contains_all(&l, &[&ep, "not signed by --cacert", &s(&other.ca)]);

    // A client certificate from another CA: the server refuses it.
    let o = status_with(&[
        format!("--endpoints={ep}"),
        format!("--cacert={}", s(&tls.ca)),
        format!("--cert={}", s(&other.client_cert)),
        format!("--key={}", s(&other.client_key)),
    ]);
    assert_exit(&o, 1);
    let l = error_line(&o);
    contains_all(&l, &[&ep, "--cert", &s(&other.client_cert)]);

    // No client certificate at all.
    let o = status_with(&[
        format!("--endpoints={ep}"),
        format!("--cacert={}", s(&tls.ca)),
    ]);
    assert_exit(&o, 1);
    contains_all(
        &error_line(&o),
        &[&ep, "client certificate", "--cert and --key"],
    );

    // A key that does not belong to the certificate: caught before dialling.
    let o = status_with(&[
        format!("--endpoints={ep}"),
        format!("--cacert={}", s(&tls.ca)),
        format!("--cert={}", s(&tls.client_cert)),
        format!("--key={}", s(&other.client_key)),
    ]);
    assert_exit(&o, 2);
    contains_all(
        &error_line(&o),
        &["--key", &s(&other.client_key), "does not match --cert"],
    );

    // Plain http against the TLS server.
    let o = status_with(&[format!("--endpoints=http://{hostport}")]);
    assert_exit(&o, 1);
    contains_all(&error_line(&o), &[&hostport, "speaks TLS", "https://"]);
}

#[test]
fn https_against_a_plain_server() {
    let tls = Tls::generate();
    let c = Cluster::single(&etcd35(), Opts::default());
    let hostport = c.members[0]
        .client_url
        .trim_start_matches("http://")
        .to_string();
    let o = status_with(&[
        format!("--endpoints=https://{hostport}"),
        format!("--cacert={}", s(&tls.ca)),
    ]);
    assert_exit(&o, 1);
    contains_all(
        &error_line(&o),
        &[&hostport, "does not speak TLS", "http://"],
    );
}

#[test]
fn server_certificate_without_the_ip_san() {
    let t = TlsNoIpSan::generate();
    let c = tls_cluster(&t.tls);
    t.swap_in_no_ip_cert();
    let o = status_with(&c.conn_args());
    assert_exit(&o, 1);
    contains_all(
        &error_line(&o),
        &["not valid for 127.0.0.1", "no matching IP SAN"],
    );
}

#[test]
fn bad_endpoints_and_unreadable_files_are_usage_errors() {
    let o = status_with(&["--endpoints=ftp://127.0.0.1:2379".to_string()]);
    assert_exit(&o, 2);
    contains_all(&error_line(&o), &["--endpoints", "ftp://"]);

    let tls = Tls::generate();
    open_to_nobody(
        tls.dir.path(),
        &[&tls.ca, &tls.client_cert, &tls.client_key],
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tls.client_key, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(lifeboat())
        .args([
            "status".to_string(),
            "--endpoints=https://127.0.0.1:1".to_string(),
            format!("--cacert={}", s(&tls.ca)),
            format!("--cert={}", s(&tls.client_cert)),
            format!("--key={}", s(&tls.client_key)),
        ])
        .env_remove("ETCDCTL_ENDPOINTS")
        .output()
        .expect("run setpriv");
    assert_exit(&o, 2);
    contains_all(
        &error_line(&o),
        &["--key", &s(&tls.client_key), "permission denied"],
    );
}

#[test]
fn wrong_password_names_the_user_and_fails_at_once() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.ctl_ok(&["user", "add", "root:right-pw"]);
    c.ctl_ok(&["auth", "enable"]);
    let ep = c.members[0].client_url.clone();
    let o = status_with(&[format!("--endpoints={ep}"), "--user=root:wrong".into()]);
    assert_exit(&o, 1);
    let l = error_line(&o);
    contains_all(&l, &[&ep, "--user root", "wrong user name or password"]);
    assert!(!stderr(&o).contains("wrong-pw"), "{}", stderr(&o));

    // The backup fails on the first attempt, with the default --retries: an
    // authentication error cannot succeed on retry, so no back-off and no second try.
    let dest = TempDir::new().unwrap();
    let o = run_lifeboat([
        "backup",
        "--to",
        dest.path().to_str().unwrap(),
        "--endpoints",
        &ep,
        "--user=root:wrong",
    ]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        !err.contains("retrying") && !err.contains("trying again"),
        "an auth error must not be retried: {err}"
    );
    contains_all(
        &error_line(&o),
        &["--user root", "wrong user name or password"],
    );
}

#[test]
fn frozen_leader_is_named_and_never_chosen() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    let leader = c.leader().expect("a leader");
    let frozen_url = c.members[leader].client_url.clone();
    let frozen_name = c.members[leader].name.clone();
    let dest = TempDir::new().unwrap();
    {
        let _f = Frozen::new(&c, leader);
        let mut args = vec![
            "status".to_string(),
            "-o".into(),
            "json".into(),
            "--command-timeout=2s".into(),
        ];
        args.extend(c.conn_args());
        let o = run_lifeboat(&args);
        assert_exit(&o, 4);
        let j = json(&o);
        let unreachable: Vec<&serde_json::Value> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "member-unreachable")
            .collect();
        assert_eq!(unreachable.len(), 1, "{j:#}");
        let msg = unreachable[0]["message"].as_str().unwrap();
        contains_all(
            msg,
            &[&frozen_url, "accepts connections but does not answer"],
        );
        assert!(!msg.contains("listen-client-urls"), "{msg}");
        assert_eq!(
            unreachable[0]["doc"],
            "docs/cluster-health.md#member-unreachable"
        );

        let mut args = vec![
            "backup".to_string(),
            "-o".into(),
            "json".into(),
            "--to".into(),
            dest.path().display().to_string(),
            "--source=leader".into(),
            "--command-timeout=2s".into(),
        ];
        args.extend(c.conn_args());
        let o = run_lifeboat(&args);
        assert_exit(&o, 0);
        let j = json(&o);
        let src = j["source_member"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!src.is_empty() && src != frozen_name, "chose {src}: {j:#}");
    }
    c.kill(leader);
}

#[test]
fn quorum_loss_reports_no_leader_and_the_arithmetic() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    let leader = c.leader().expect("a leader");
    let survivor = (leader + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            c.stop(i);
        }
    }
    let mut args = vec!["status".to_string(), "--command-timeout=2s".into()];
    args.extend(c.conn_args());
    let o = run_lifeboat(&args);
    assert_exit(&o, 4);
    let out = stdout(&o);
    let header = out.lines().next().unwrap_or_default();
    contains_all(
        header,
        &["no leader", "1 of 3 members answer; 2 needed for quorum"],
    );
    args.extend(["-o".to_string(), "json".to_string()]);
    let j = json(&run_lifeboat(&args));
    assert!(j["leader"].is_null(), "{j:#}");
    assert_eq!(j["quorum"]["alive"], 1);
    assert_eq!(j["quorum"]["needed"], 2);
    let checks: Vec<&str> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"quorum-lost") && checks.contains(&"no-leader"),
        "{checks:?}"
    );
}

#[test]
fn a_frozen_source_is_abandoned_by_the_stall_timeout() {
    use std::io::BufRead;
    let c = Cluster::start(&etcd35(), 3, Opts::default());
    c.fill_random("/big/", 2000, 10_000);
    let dest = TempDir::new().unwrap();
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        dest.path().display().to_string(),
        "--source=leader".into(),
        "--rate-limit=2M".into(),
        "--stream-timeout=3s".into(),
        "--command-timeout=2s".into(),
    ];
    args.extend(c.conn_args());
    let mut child = std::process::Command::new(lifeboat())
        .args(&args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let source =
        loop {
            let line = lines
                .next()
                .expect("backup ended before streaming")
                .unwrap();
            seen.push(line.clone());
            if let Some(i) = c.members.iter().position(|m| {
                line.contains("streaming from member") && line.contains(&m.client_url)
            }) {
                break i;
            }
        };
    let url = c.members[source].client_url.clone();
    let name = c.members[source].name.clone();
    // Freeze the member once its data flows (a stored file has grown), not before.
    fn stored_bytes(d: &std::path::Path) -> u64 {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            stored_bytes(&p)
                        } else {
                            e.metadata().map(|m| m.len()).unwrap_or(0)
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    while stored_bytes(dest.path()) < 64 * 1024 {
        assert!(child.try_wait().unwrap().is_none(), "backup ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let frozen = Frozen::new(&c, source);
    seen.extend(lines.map_while(|l| l.ok()));
    let status = child.wait().unwrap();
    drop(frozen);
    let err = seen.join("\n");
    assert!(status.success(), "backup failed:\n{err}");
    assert!(
        err.contains(&format!("stalled: nothing for 3s from member {name}")) && err.contains(&url),
        "no stall message for {name} at {url}:\n{err}"
    );
    assert!(!err.to_lowercase().contains("h2 protocol error"), "{err}");
}
