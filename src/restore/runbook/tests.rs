//! Golden outputs of `restore plan`: plan.json, RUNBOOK.md and every node script, for a
//! topology that uses each way of running etcd (systemd with a WAL dir and TLS, a static
//! pod with a WAL dir, a command line with a space in its data dir), from a backup with the
//! revision bump and from a member's db.
//! Any change to the generated text shows up here as a diff against
//! `tests/golden/restore-plan/`; `LIFEBOAT_BLESS=1 cargo test --lib golden_plan` rewrites
//! the files after a deliberate change (review the diff before committing it).

use std::path::PathBuf;

use crate::restore::plan::{make_plan, write_plan, PlanInput, Source, DEFAULT_BUMP};
use crate::restore::topology::parse;

const TOPOLOGY: &str = r#"
cluster_token = "golden-restore"
etcd_version = "3.5"

[[member]]
name = "sys"
host = "node-a"
peer_urls = ["https://10.0.0.1:2380"]
client_urls = ["https://10.0.0.1:2379", "https://127.0.0.1:2379"]
data_dir = "/var/lib/etcd"
wal_dir = "/var/lib/etcd-wal"
runs_as = "systemd"
unit = "etcd-main.service"
env_file = "/etc/default/etcd-main"
etcd_version = "3.5.16"
peer_cert_file = "/etc/etcd/pki/peer.crt"
peer_key_file = "/etc/etcd/pki/peer.key"
peer_trusted_ca_file = "/etc/etcd/pki/ca.crt"
cert_file = "/etc/etcd/pki/server.crt"
key_file = "/etc/etcd/pki/server.key"
trusted_ca_file = "/etc/etcd/pki/ca.crt"

[[member]]
name = "pod"
peer_urls = ["https://10.0.0.2:2380"]
client_urls = ["https://10.0.0.2:2379"]
data_dir = "/var/lib/etcd"
wal_dir = "/var/lib/etcd-wal"
runs_as = "static-pod"
manifest = "/etc/kubernetes/manifests/etcd.yaml"
etcd_version = "3.4"
peer_cert_file = "/etc/kubernetes/pki/etcd/peer.crt"
peer_key_file = "/etc/kubernetes/pki/etcd/peer.key"
peer_trusted_ca_file = "/etc/kubernetes/pki/etcd/ca.crt"

[[member]]
name = "cmd"
peer_urls = ["http://10.0.0.3:2380", "http://10.0.0.33:2380"]
client_urls = ["http://10.0.0.3:2379"]
data_dir = "/srv/etcd data"
runs_as = "command"
cert_file = "/etc/etcd/server.crt"
key_file = "/etc/etcd/server.key"
"#;

fn source(db_file: Option<&str>) -> Source {
    Source {
        id: "20261121T031500.000Z-8e9e05c52164694d".into(),
        revision: 4242,
        db_sha256: "ab".repeat(32),
        cluster_id: "8e9e05c52164694d".into(),
        etcd_version: "3.4.23".into(),
        db_file: db_file.map(String::from),
        client_urls: vec![
            "https://10.0.0.1:2379".into(),
            "https://10.0.0.2:2379".into(),
            "http://[fd00::3]:2379".into(),
        ],
    }
}

fn golden(case: &str, src: Source, bump: Option<u64>, expected: bool) {
    golden_with(case, src, bump, expected, |_| {});
}

fn golden_with(
    case: &str,
    src: Source,
    bump: Option<u64>,
    expected: bool,
    tweak: impl FnOnce(&mut crate::restore::plan::Plan),
) {
    let t = parse(TOPOLOGY).expect("golden topology parses");
    let mut plan = make_plan(
        &t,
        &PlanInput {
            from: "s3://backups/prod",
            manifest: &src,
            bump_revision: bump,
            kubernetes: true,
            topology_file: "topology.toml",
        },
    )
    .expect("golden plan");
    if expected {
        plan.expected_revision = Some(1_000_004_242);
        plan.expected_hashkv = Some(3_735_928_559);
        plan.expected_keys = Some(17);
    }
    tweak(&mut plan);
    let dir = tempfile::TempDir::new().unwrap();
    let written = write_plan(&plan, dir.path(), false).expect("plan written");
    let want_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/restore-plan")
        .join(case);
    let bless = std::env::var_os("LIFEBOAT_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&want_dir).unwrap();
    }
    let mut names = Vec::new();
    for path in written {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let got = std::fs::read_to_string(&path).unwrap();
        let want_path = want_dir.join(&name);
        if bless {
            std::fs::write(&want_path, &got).unwrap();
        } else {
            let want = std::fs::read_to_string(&want_path)
                .unwrap_or_else(|e| panic!("{}: {e}", want_path.display()));
            assert!(
                got == want,
                "{case}/{name} differs from {}:\n{}",
                want_path.display(),
                first_difference(&want, &got)
            );
        }
        names.push(name);
    }
    names.sort();
    let mut have: Vec<String> = std::fs::read_dir(&want_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(
        names, have,
        "{case}: the plan writes other files than the golden ones"
    );
}

fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n want: {w}\n  got: {g}", i + 1);
        }
    }
    format!(
        "{} lines wanted, {} written",
        want.lines().count(),
        got.lines().count()
    )
}

#[test]
fn golden_plan_from_a_backup_with_the_bump() {
    golden("bump", source(None), Some(DEFAULT_BUMP), true);
}

#[test]
fn golden_plan_from_a_member_db_without_the_bump() {
    golden(
        "member-db",
        source(Some("/var/lib/etcd/member/snap/db")),
        None,
        false,
    );
}

/// A point-in-time plan: RUNBOOK.md names the target revision, and the node scripts refuse
/// the etcdutl fallback (only lifeboat replays captured changes).
#[test]
fn golden_plan_point_in_time() {
    golden_with("pitr", source(None), None, true, |p| {
        p.to_revision = Some(4300);
        p.to_time = Some("2026-11-21T03:20:00Z".into());
        p.expected_revision = Some(4300);
        p.replay = Some(crate::restore::pitr::ReplayPlan {
            after: 4242,
            records: 80,
            records_sha256: "cd".repeat(32),
            records_sha256_of: Default::default(),
            revisions: 58,
            puts: 70,
            deletes: 6,
            lease_grants: 2,
            lease_revokes: 1,
            compact_revision: Some(4250),
            live_hashes_checked: vec![4290],
            compacted: false,
            compacted_away: 0,
            edits: None,
        });
    });
}
