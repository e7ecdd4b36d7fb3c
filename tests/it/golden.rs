//! A backup written by lifeboat's first format (format_version 1, no manifest digest),
//! committed under tests/golden/v1: today's reader must still list, verify and fetch it.

use crate::common::*;

const ID: &str = "20261129T053645.864Z-650b5d21591bfd0";

fn golden_copy() -> TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1");
    let dir = TempDir::new().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

#[test]
fn golden_v1_backup_still_lists_verifies_and_fetches() {
    let dir = golden_copy();
    let d = dir.path().to_str().unwrap();
    let o = run_lifeboat(["list", "--from", d, "-o", "json"]);
    assert_exit(&o, 0);
    let l = json(&o);
    assert_eq!(l[0]["id"], ID);
    assert_eq!(l[0]["format_version"], 1);
    assert_eq!(
        l[0]["cluster_id"], "650b5d21591bfd0",
        "hex, not zero-padded"
    );
    let o = run_lifeboat(["verify", "--from", d, ID, "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["revision"], 4);
    let out = dir.path().join("golden.db");
    let o = run_lifeboat(["fetch", "--from", d, ID, "--out", out.to_str().unwrap()]);
    assert_exit(&o, 0);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), 20480 + 32);
    let o = run_lifeboat(["get", out.to_str().unwrap(), "/golden/key2"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("value2"), "{}", stdout(&o));
}

/// Without a recorded digest a v1 manifest is still checked against its data in full.
#[test]
fn golden_v1_data_damage_is_still_exit_3() {
    let dir = golden_copy();
    let d = dir.path().to_str().unwrap();
    let obj = dir.path().join(format!("{ID}.db.zst"));
    let mut b = std::fs::read(&obj).unwrap();
    b[100] ^= 0x01;
    std::fs::write(&obj, &b).unwrap();
    assert_exit(&run_lifeboat(["verify", "--from", d, ID]), 3);
}

/// DESIGN.md's canonical form is reproducible by another program: Python's json module
/// (sorted keys, no whitespace, UTF-8) turns the v1 golden manifest into a v2 one whose
/// `manifest_sha256` lifeboat accepts, and one changed field is then exit 3.
#[test]
fn manifest_digest_is_reproducible_from_the_design_doc() {
    let dir = golden_copy();
    let d = dir.path().to_str().unwrap();
    let name = dir.path().join(format!("{ID}.manifest.json"));
    let script = r#"
import hashlib, json, sys
p = sys.argv[1]
v = json.load(open(p))
v["format_version"] = 2
v.pop("manifest_sha256", None)
c = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
v["manifest_sha256"] = hashlib.sha256(c).hexdigest()
json.dump(v, open(p, "w"), indent=1)
"#;
    let st = std::process::Command::new("python3")
        .args(["-c", script, name.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = run_lifeboat(["verify", "--from", d, ID]);
    assert_exit(&o, 0);
    let text = std::fs::read_to_string(&name).unwrap();
    std::fs::write(
        &name,
        text.replace("\"name\": \"golden\"", "\"name\": \"golden2\""),
    )
    .unwrap();
    let o = run_lifeboat(["verify", "--from", d, ID]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("manifest SHA-256"), "{}", stderr(&o));
}
