//! Helpers of the backup and manifest tests (branch `store`).

use std::path::{Path, PathBuf};

use super::*;

/// `lifeboat backup --to DEST -o json` against `c`, which must succeed.
pub fn backup_json(c: &Cluster, dest: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        dest.display().to_string(),
    ];
    args.extend(c.conn_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-o".into(), "json".into()]);
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    json(&o)
}

/// `lifeboat list --from DEST -o json`, which must succeed.
pub fn list_json(dest: &Path) -> serde_json::Value {
    let o = run_lifeboat(["list", "--from", dest.to_str().unwrap(), "-o", "json"]);
    assert_exit(&o, 0);
    json(&o)
}

/// The data object in a destination holding one backup.
pub fn data_object(dest: &Path) -> PathBuf {
    std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".db.zst"))
        .expect("a data object")
}

/// Edit a manifest file's JSON in place (leaving its recorded digest as it was).
pub fn edit_manifest(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}
