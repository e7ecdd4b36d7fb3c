//! A restore from what `lifeboat capture` stored: `restore test` and `restore plan` /
//! `apply` to a revision, local and S3, and what they refuse.

use super::*;

/// The whole path an operator takes: what `capture` stored, read by `restore test` and
/// `restore plan` through `load_records` (no records collected by the test), local and S3:
/// the restored hashkv at R equals the live cluster's at R.
pub(super) fn restore_from_what_capture_stored(
    c: &Cluster,
    s3: &S3Server,
    local: &str,
    (mid, mid_hash): (i64, u64),
    end: i64,
    tmp: &tempfile::TempDir,
) {
    let etcd = c.bins.etcd.to_str().unwrap();
    // `mid` was hashed before the compaction that followed it (a hashkv depends on what
    // was compacted): a restore to `mid` has not replayed that compaction yet.
    let end_hash = live_hash(c, end);
    for (from, rev, want) in [(local, end, end_hash), ("s3://cap/etcd", mid, mid_hash)] {
        let o = s3.lifeboat([
            "-o",
            "json",
            "restore",
            "test",
            "--from",
            from,
            "--etcd",
            etcd,
            "--to-revision",
            &rev.to_string(),
        ]);
        assert_exit(&o, 0);
        let r = json(&o);
        assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
        assert_eq!(r["to_revision"].as_i64(), Some(rev), "{r}");
        assert_eq!(r["hashkv"].as_u64(), Some(want), "{from} at {rev}: {r}");
    }
    // --to-time: now is after every clock mark, so the plan restores the last durable
    // revision; a revision past it is refused with the last one named.
    let topo = one_member_topology(c.bins.version, tmp.path());
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let plan = |flag: &str, v: &str, out: &str| {
        run_lifeboat([
            "-o",
            "json",
            "restore",
            "plan",
            "--from",
            local,
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            tmp.path().join(out).to_str().unwrap(),
            flag,
            v,
        ])
    };
    let o = plan("--to-time", &now, "by-time");
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["to_revision"].as_i64(), Some(end), "{p}");
    assert_eq!(p["expected_hashkv"].as_u64(), Some(end_hash), "{p}");
    // --to-time at the moment a segment in the middle was sealed (its name says when):
    // the plan restores that segment's last revision, found from the names.
    let mut segs: Vec<(i64, i64)> = std::fs::read_dir(local)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            let f: Vec<&str> = n.strip_suffix(".seg")?.split('-').collect();
            (f.len() == 5 && f[0] == "capture")
                .then(|| (f[3].parse().unwrap(), f[4].parse().unwrap()))
        })
        .collect();
    segs.sort();
    let (_, sealed_ms) = segs[segs.len() / 2];
    let seg_last = segs
        .iter()
        .filter(|s| s.1 <= sealed_ms)
        .map(|s| s.0)
        .max()
        .unwrap();
    let sealed = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(sealed_ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let o = plan("--to-time", &sealed, "by-segment-time");
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["to_revision"].as_i64(), Some(seg_last), "{sealed}: {p}");
    let o = plan("--to-revision", &(end + 10).to_string(), "too-far");
    assert_exit(&o, 2);
    let e = json(&o);
    assert_eq!(e["flag"].as_str(), Some("--to-revision"), "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(&format!("restore to revision {end} at most")),
        "{e}"
    );
    // --compact, from S3 through the CLI: the restore's hashkv at `end` is the live
    // cluster's once that is compacted at end-1 too, and the plan records the compaction.
    let o = s3.lifeboat([
        "-o",
        "json",
        "restore",
        "test",
        "--from",
        "s3://cap/etcd",
        "--etcd",
        etcd,
        "--to-revision",
        &end.to_string(),
        "--compact",
    ]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
    let o = s3.lifeboat([
        "-o",
        "json",
        "restore",
        "plan",
        "--from",
        "s3://cap/etcd",
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        tmp.path().join("compacted").to_str().unwrap(),
        "--to-revision",
        &end.to_string(),
        "--compact",
    ]);
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["replay"]["compacted"].as_bool(), Some(true), "{p}");
    assert_eq!(
        p["replay"]["compact_revision"].as_i64(),
        Some(end - 1),
        "{p}"
    );
    assert_eq!(p["expected_hashkv"], r["hashkv"], "{p}");
    // The plan names the records by the segments they were read from.
    assert_eq!(
        p["replay"]["records_sha256_of"].as_str(),
        Some("segments"),
        "{p}"
    );
    // The plan keeps what its replay committed beside plan.json, for `restore apply`.
    let dir = tmp.path().join("compacted");
    let edits = dir.join("replay.edits");
    let kept = std::fs::read(&edits).unwrap();
    assert_eq!(
        p["replay"]["edits"]["bytes"].as_u64(),
        Some(kept.len() as u64),
        "{p}"
    );
    // Without that file, `restore apply` reads the segments again and refuses others than
    // the plan's (a plan whose digest differs), before writing anything.
    std::fs::remove_file(&edits).unwrap();
    let plan_json = dir.join("plan.json");
    let good = std::fs::read_to_string(&plan_json).unwrap();
    let digest = p["replay"]["records_sha256"].as_str().unwrap();
    std::fs::write(&plan_json, good.replace(digest, &"0".repeat(64))).unwrap();
    let apply_with = |extra: &[&str]| {
        let mut args = vec!["restore", "apply", "--plan", dir.to_str().unwrap()];
        args.extend(["--node", "r0"]);
        args.extend(extra);
        s3.lifeboat(args)
    };
    let apply = || apply_with(&[]);
    let o = apply();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("make a new plan"), "{}", stderr(&o));
    let r0 = tmp.path().join("r0");
    assert!(!r0.join("member").exists());
    std::fs::write(&plan_json, good).unwrap();
    // The plan as written but without its kept file: the segments are read and replayed.
    let o = apply();
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("replay.edits is missing"),
        "{}",
        stderr(&o)
    );
    let db = r0.join("member").join("snap").join("db");
    let replayed = std::fs::read(&db).unwrap();
    std::fs::remove_dir_all(&r0).unwrap();
    // A kept file that is not the plan's is refused, naming it, before anything is
    // written; the plan's own is committed without reading the segments, and writes the
    // same database byte for byte.
    let mut damaged = kept.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&edits, &damaged).unwrap();
    let o = apply();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("replay.edits"), "{}", stderr(&o));
    assert!(!r0.join("member").exists());
    std::fs::write(&edits, &kept).unwrap();
    // --dry-run says which way apply writes the member.
    let o = apply_with(&["--dry-run"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("replay.edits: its replay of"),
        "{}",
        stdout(&o)
    );
    assert_exit(&apply(), 0);
    assert!(
        std::fs::read(&db).unwrap() == replayed,
        "the kept edits wrote another db"
    );
    c.ctl_ok(&["compact", &(end - 1).to_string()]);
    assert_eq!(r["hashkv"].as_u64(), Some(live_hash(c, end)), "{r}");
    // --compact alone is refused: it compacts a point-in-time window.
    let o = run_lifeboat([
        "-o",
        "json",
        "restore",
        "plan",
        "--from",
        local,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        tmp.path().join("no-target").to_str().unwrap(),
        "--compact",
    ]);
    assert_exit(&o, 2);
    assert_eq!(json(&o)["flag"].as_str(), Some("--compact"));
    // A point-in-time plan from a damaged backup is refused naming it (the copy the
    // replay would start from is made by that verify), and leaves nothing behind.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for e in std::fs::read_dir(local).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), damaged.join(e.file_name())).unwrap();
    }
    // One byte flipped in the middle of the first file whose name ends so.
    let damage = |suffix: &str| {
        let file = std::fs::read_dir(&damaged)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
    };
    damage(".db.zst");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let refused = || {
        let o = run_lifeboat([
            "restore",
            "plan",
            "--from",
            damaged.to_str().unwrap(),
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            work.join("plan").to_str().unwrap(),
            "--to-revision",
            &end.to_string(),
            "--compact",
        ]);
        assert_exit(&o, 3);
        assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
        assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    };
    refused();
    // With a damaged segment too, read while the backup is verified, the backup is still
    // what is named: its verdict comes first, as when the two were read in turn.
    damage(".seg");
    refused();
}
