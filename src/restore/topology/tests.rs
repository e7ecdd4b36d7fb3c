use super::*;

const GOOD: &str = r#"
cluster_token = "new-token"
old_cluster_token = "old-token"

[[member]]
name = "a"
peer_urls = ["http://127.0.0.1:2380"]
client_urls = ["http://127.0.0.1:2379"]
data_dir = "/var/lib/etcd-a"

[[member]]
name = "b"
peer_urls = ["http://127.0.0.1:2480"]
client_urls = ["http://127.0.0.1:2479"]
data_dir = "/var/lib/etcd-b"
runs_as = "systemd"
"#;

#[test]
fn good_topology_parses_with_defaults_and_warns_on_even_count() {
    let t = parse(GOOD).unwrap();
    assert_eq!(t.members.len(), 2);
    assert_eq!(t.etcd_version, "3.5");
    assert_eq!(t.members[0].host, "127.0.0.1");
    assert_eq!(t.members[1].runs_as, RunsAs::Systemd);
    assert_eq!(t.members[1].line, 12);
    assert_eq!(t.warnings.len(), 1);
}

#[test]
fn problems_name_key_and_line() {
    let bad = GOOD
        .replace("http://127.0.0.1:2480", "http://127.0.0.1:2380")
        .replace("/var/lib/etcd-a", "var/lib/etcd-a")
        .replace("new-token", "old-token");
    let p = parse(&bad).unwrap_err();
    let keys: Vec<(&str, usize)> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        vec![
            ("cluster_token", 2),
            ("member[0].data_dir", 9),
            ("member[1].peer_urls", 13)
        ],
        "{p:?}"
    );
    assert!(
        p[2].message.contains("also a peer URL of \"a\" (line 6)"),
        "{p:?}"
    );
}

#[test]
fn a_wal_dir_inside_the_data_dir_or_around_it_is_refused() {
    for wal in ["/var/lib/etcd-a/wal", "/var/lib/etcd-a/", "/var/lib"] {
        let bad = GOOD.replace(
            "data_dir = \"/var/lib/etcd-a\"",
            &format!("data_dir = \"/var/lib/etcd-a\"\nwal_dir = \"{wal}\""),
        );
        let p = parse(&bad).unwrap_err();
        assert_eq!(p[0].key, "member[0].wal_dir", "{p:?}");
        assert!(p[0].message.contains("overlap"), "{p:?}");
    }
    let ok = GOOD.replace(
        "data_dir = \"/var/lib/etcd-a\"",
        "data_dir = \"/var/lib/etcd-a\"\nwal_dir = \"/var/lib/etcd-a-wal\"",
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn bad_url_unknown_key_https_without_certs() {
    let p = parse(&GOOD.replace("http://127.0.0.1:2480", "https://127.0.0.1:2480/x")).unwrap_err();
    assert_eq!(p[0].key, "member[1].peer_urls");
    assert!(p[0].message.contains("no path"), "{p:?}");
    let p = parse(&GOOD.replace("http://127.0.0.1:2480", "https://127.0.0.1:2480")).unwrap_err();
    assert_eq!(p[0].key, "member[1].peer_cert_file");
    let p = parse(&GOOD.replace("runs_as", "run_as")).unwrap_err();
    assert_eq!(p[0].line, 16, "{p:?}");
    assert!(p[0].message.contains("run_as"), "{p:?}");
}
