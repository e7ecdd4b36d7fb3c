//! Retention and scrubbing through the CLI, on copies of the committed golden backup (no
//! etcd needed: the stored format is what these commands read).

use crate::common::*;
use std::path::Path;

const GOLDEN: &str = "20261129T053645.864Z-650b5d21591bfd0";
/// Ids of the copies: one hour and two hours after the golden backup.
const IDS: [&str; 3] = [
    GOLDEN,
    "20261129T063645.864Z-650b5d21591bfd0",
    "20261129T073645.864Z-650b5d21591bfd0",
];

/// A destination with three backups of the golden data, one hour apart (format v1
/// manifests carry no digest, so a copy only needs its id and object renamed).
fn three_backups() -> TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1");
    let dir = TempDir::new().unwrap();
    let manifest = std::fs::read(src.join(format!("{GOLDEN}.manifest.json"))).unwrap();
    let data = std::fs::read(src.join(format!("{GOLDEN}.db.zst"))).unwrap();
    for id in IDS {
        let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        m["id"] = id.into();
        m["object"] = format!("{id}.db.zst").into();
        std::fs::write(
            dir.path().join(format!("{id}.manifest.json")),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join(format!("{id}.db.zst")), &data).unwrap();
    }
    dir
}

fn record(dir: &Path, id: &str) -> serde_json::Value {
    let b = std::fs::read(dir.join(format!("{id}.verified.json"))).unwrap();
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn scrubbing_finds_a_flipped_byte_and_prune_never_removes_it() {
    let dir = three_backups();
    let d = dir.path().to_str().unwrap();
    let obj = dir.path().join(format!("{}.db.zst", IDS[2]));
    let mut b = std::fs::read(&obj).unwrap();
    b[100] ^= 0x01;
    std::fs::write(&obj, &b).unwrap();

    let o = run_lifeboat(["verify", "--from", d, "--all", "-o", "json"]);
    assert_exit(&o, 3);
    assert_eq!(json(&o).as_array().unwrap().len(), 3);
    assert_eq!(record(dir.path(), IDS[2])["ok"], false);
    assert_eq!(record(dir.path(), IDS[1])["ok"], true);

    let o = run_lifeboat([
        "prune",
        "--from",
        d,
        "--keep-last",
        "1",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let plan = json(&o);
    assert_eq!(plan["dry_run"], true);
    let items = plan["backups"].as_array().unwrap();
    assert_eq!(items[0]["id"], IDS[2]);
    assert_eq!(items[0]["action"], "keep");
    assert_eq!(items[0]["verify"], "failed");
    assert!(items[0]["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("failed verification"));
    assert_eq!(items[1]["action"], "keep");
    assert_eq!(
        items[1]["reasons"],
        serde_json::json!(["newest good backup", "last 1"])
    );
    assert_eq!(items[2]["action"], "remove");

    let o = run_lifeboat(["prune", "--from", d, "--keep-last", "1"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("1 kept") || stdout(&o).contains("2 kept"));
    let o = run_lifeboat(["list", "--from", d, "-o", "json"]);
    let ids: Vec<String> = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [IDS[2], IDS[1]]);
    assert!(!dir.path().join(format!("{}.db.zst", IDS[0])).exists());
    assert!(!dir
        .path()
        .join(format!("{}.verified.json", IDS[0]))
        .exists());
}

#[test]
fn a_budget_rotates_through_the_oldest_verified() {
    let dir = three_backups();
    let d = dir.path().to_str().unwrap();
    for want in IDS {
        let o = run_lifeboat([
            "verify", "--from", d, "--all", "--budget", "1", "-o", "json",
        ]);
        assert_exit(&o, 0);
        let r = json(&o);
        assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r[0]["id"], want);
    }
    // All verified once: the next run takes the one verified longest ago again.
    let o = run_lifeboat([
        "verify", "--from", d, "--all", "--budget", "1", "-o", "json",
    ]);
    assert_eq!(json(&o)[0]["id"], IDS[0]);
}

#[test]
fn prune_without_a_rule_is_a_usage_error_and_removes_nothing() {
    let dir = three_backups();
    let d = dir.path().to_str().unwrap();
    let o = run_lifeboat(["prune", "--from", d]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("no retention rule"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
}

/// `verify --all` on a destination it cannot write to (here: read as `nobody`, as on a
/// read-only mount or a full disk): the verdicts are the answer and decide the exit code;
/// that they could not be recorded is one warning line.
#[test]
fn verify_all_on_a_read_only_destination_still_gives_its_verdicts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = three_backups();
    let d = dir.path().to_str().unwrap();
    // Readable by everyone, writable by root only.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = member::run_lifeboat_as_nobody(["verify", "--from", d, "--all", "-q"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).matches(": OK").count(), 3, "{}", stdout(&o));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "one warning line: {e}");
    assert!(
        e.contains("warning: 3 verdict(s) not recorded in") && e.contains("Permission denied"),
        "{e}"
    );
    assert!(!dir
        .path()
        .join(format!("{}.verified.json", IDS[0]))
        .exists());

    // Damage is still exit 3, with the same single warning.
    let obj = dir.path().join(format!("{}.db.zst", IDS[1]));
    let mut b = std::fs::read(&obj).unwrap();
    b[100] ^= 0x01;
    std::fs::write(&obj, &b).unwrap();
    let o = member::run_lifeboat_as_nobody(["verify", "--from", d, "--all", "-q", "-o", "json"]);
    assert_exit(&o, 3);
    let reports = json(&o);
    let bad: Vec<_> = reports
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{reports}");
    assert_eq!(bad[0]["id"], IDS[1]);
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}
