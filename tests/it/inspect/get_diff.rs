//! `lifeboat get` against `etcdctl get` on the same fixtures, and `diff` between two
//! snapshots.

use super::*;

fn kvs(v: &serde_json::Value) -> Vec<(String, String, i64, i64, i64)> {
    v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap().to_string(),
                        kv["value"].as_str().unwrap_or("").to_string(),
                        kv["create_revision"].as_i64().unwrap(),
                        kv["mod_revision"].as_i64().unwrap(),
                        kv["version"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn get_matches_etcdctl() {
    for f in [fx35(), fx34()] {
        let o = run_lifeboat([
            "get",
            "-o",
            "json",
            f.snap.to_str().unwrap(),
            "/fix/",
            "--prefix",
        ]);
        assert_exit(&o, 0);
        let j = json(&o);
        assert_eq!(kvs(&j), kvs(&f.get_fix), "{}", f.version);
        assert_eq!(j["count"], f.get_fix["count"]);
        let o = run_lifeboat([
            "get",
            "-o",
            "json",
            f.snap.to_str().unwrap(),
            "/fix/",
            "--prefix",
            "--rev",
            &f.mid_rev.to_string(),
        ]);
        assert_exit(&o, 0);
        assert_eq!(kvs(&json(&o)), kvs(&f.get_fix_mid), "{} at mid", f.version);
        let o = run_lifeboat(["get", f.snap.to_str().unwrap(), "/fix/a"]);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), "/fix/a\na4\n");
        let o = run_lifeboat([
            "get",
            f.raw.to_str().unwrap(),
            "/fix/",
            "--prefix",
            "--keys-only",
        ]);
        assert_exit(&o, 0);
        assert!(
            stdout(&o).starts_with("/fix/a\n/fix/big2\n"),
            "{}",
            stdout(&o)
        );
        let o = run_lifeboat(["get", f.snap.to_str().unwrap(), "/nope"]);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), "");
    }
}

#[test]
fn diff_between_snapshots() {
    let f = fx34();
    let o = run_lifeboat([
        "diff",
        "-o",
        "json",
        f.snap_a.to_str().unwrap(),
        f.snap.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let j = json(&o);
    let s = &j["summary"];
    assert_eq!(s["added"], 1, "{j}");
    assert_eq!(s["removed"], 1, "{j}");
    assert_eq!(s["changed"], 2, "{j}");
    assert_eq!(s["revisions_differing"], 0);
    let keys: Vec<(String, String)> = j["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().into(),
                k["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("/bulk/00000001".into(), "changed".into()),
            ("/fix/a".into(), "changed".into()),
            ("/fix/big1".into(), "removed".into()),
            ("/fix/new".into(), "added".into()),
        ]
    );
    let o = run_lifeboat([
        "diff",
        "-o",
        "json",
        "--prefix",
        "/fix/",
        f.snap_a.to_str().unwrap(),
        f.snap.to_str().unwrap(),
    ]);
    assert_eq!(json(&o)["summary"]["changed"], 1);
    let o = run_lifeboat(["diff", f.snap.to_str().unwrap(), f.snap.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).starts_with("0 added, 0 removed, 0 changed"),
        "{}",
        stdout(&o)
    );
    // --exit-code, as git's: 1 when they differ (the report is printed all the same), 0
    // when they do not; --prefix narrows what counts.
    let (a, b) = (f.snap_a.to_str().unwrap(), f.snap.to_str().unwrap());
    let o = run_lifeboat(["diff", "--exit-code", a, b]);
    assert_exit(&o, 1);
    assert!(
        stdout(&o).contains("1 added, 1 removed, 2 changed"),
        "{}",
        stdout(&o)
    );
    let o = run_lifeboat(["diff", "--exit-code", "-o", "json", "--summary", a, b]);
    assert_exit(&o, 1);
    assert_eq!(json(&o)["summary"]["added"], 1);
    assert_exit(&run_lifeboat(["diff", "--exit-code", b, b]), 0);
    assert_exit(
        &run_lifeboat(["diff", "--exit-code", "--prefix", "/none/", a, b]),
        0,
    );
}
