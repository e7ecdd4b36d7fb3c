//! `check-member` and `wal dump` on member dirs 3.6 and 3.7 wrote: clean, torn tail,
//! flipped byte, each verdict checked by starting that etcd.

use super::*;

/// A fresh copy of the source member's dir.
fn member_copy(s: &Source, tmp: &TempDir) -> PathBuf {
    let d = tmp.path().join("m0");
    copy_dir(&s.member_dir, &d);
    d
}

fn check(dir: &Path) -> (std::process::Output, serde_json::Value) {
    let o = run_lifeboat(["check-member", "-o", "json", dir.to_str().unwrap()]);
    let j = json(&o);
    (o, j["members"][0].clone())
}

/// check-member's verdict, and its prediction held by the real etcd of that version.
fn verdict(s: &Source, dir: &Path, what: &str, want: &str, code: i32) -> serde_json::Value {
    let (o, r) = check(dir);
    assert_eq!(r["verdict"], want, "etcd {} {what}: {r:#}", s.bins.version);
    assert_exit(&o, code);
    let predicted = r["etcd_starts"].as_bool().unwrap();
    let got = start_on_dir(&s.bins, dir, "m0", Duration::from_secs(40));
    assert_eq!(
        got.serving, predicted,
        "etcd {} {what}: lifeboat predicted etcd_starts={predicted}\n{r:#}\n{}",
        s.bins.version, got.log
    );
    r
}

fn wal_entries(dir: &Path) -> Vec<serde_json::Value> {
    let o = run_lifeboat([
        "wal",
        "dump",
        "-o",
        "json",
        "--type",
        "entry",
        dir.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    json(&o).as_array().unwrap().clone()
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v.pop().unwrap()
}

/// check-member and wal dump on a member dir the version wrote: clean, torn tail, flipped
/// byte, each prediction checked by starting that etcd.
fn check_member(version: &str) {
    let s = source(version);
    let snaps = std::fs::read_dir(s.member_dir.join("member/snap"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snap")
        })
        .count();
    // The issue expected 3.7 to stop writing v2 .snap files: 3.7.3 still writes them at every
    // raft snapshot (checked here, so a release that stops shows up).
    assert!(
        snaps > 0,
        "etcd {} wrote no .snap files at --snapshot-count",
        s.bins.version
    );
    let tmp = TempDir::new().unwrap();
    let d = member_copy(s, &tmp);
    let r = verdict(s, &d, "clean copy", "healthy", 0);
    let serious = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] != "warning")
        .count();
    assert_eq!(serious, 0, "{r:#}");

    // Torn tail: the last segment cut inside its last entry.
    let tmp = TempDir::new().unwrap();
    let d = member_copy(s, &tmp);
    let last = last_segment(&d);
    let name = last.file_name().unwrap().to_str().unwrap().to_string();
    let entries: Vec<_> = wal_entries(&d)
        .into_iter()
        .filter(|e| e["file"] == name.as_str())
        .collect();
    let rec = entries.last().unwrap()["offset"].as_u64().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(rec + 8 + 4).unwrap();
    drop(f);
    let r = verdict(s, &d, "last entry cut", "torn-tail", 0);
    assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec), "{r:#}");

    // A flipped byte inside a big entry in the middle of the log.
    let tmp = TempDir::new().unwrap();
    let d = member_copy(s, &tmp);
    let entries = wal_entries(&d);
    let big = entries
        .iter()
        .find(|e| e["data_len"].as_u64().or(e["size"].as_u64()).unwrap_or(0) > 5000)
        .unwrap_or(&entries[entries.len() / 2]);
    let file = d.join("member/wal").join(big["file"].as_str().unwrap());
    let rec = big["offset"].as_u64().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[rec as usize + 40] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let r = verdict(s, &d, "flipped byte", "corrupt-wal", 3);
    assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec), "{r:#}");
}

#[test]
fn check_member_on_3_6_dirs() {
    check_member("3.6");
}

#[test]
fn check_member_on_3_7_dirs() {
    check_member("3.7");
}
