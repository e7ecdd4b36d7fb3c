//! Offline readers (`get`, `diff`, `inspect`) never answer from damaged data: real
//! snapshots from etcd 3.5, damaged on disk, must give exit 3 naming the file (for `diff`,
//! which of the two), the page when there is one, and print nothing on stdout.
use crate::common::*;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lifeboat::format::bolt::{BucketRoot, Db};

const ODD_KEY: &[u8] = b"/odd/\xff\xfe-key";

/// A snapshot of a small history with a non-UTF-8 key, and its revision.
fn snapshot(dir: &Path) -> (PathBuf, i64) {
    let bins = etcd35();
    let c = Cluster::single(&bins, Opts::default());
    for i in 0..40 {
        c.put(&format!("/k/{i:03}"), &format!("value-{i}"));
    }
    c.ctl_ok(&["del", "/k/005"]);
    let o = Command::new(&c.bins.etcdctl)
        .env_clear()
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.endpoints()))
        .arg("put")
        .arg(OsStr::from_bytes(ODD_KEY))
        .arg("odd-value")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    c.put("/k/001", "changed");
    let snap = dir.join("snap.db");
    c.ctl_ok(&["snapshot", "save", snap.to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["get", "/", "--prefix", "--limit=1", "-w", "json"]))
            .unwrap();
    (snap, v["header"]["revision"].as_i64().unwrap())
}

/// The first leaf page of bucket `key`, and its elements' key offsets within the page.
fn key_leaf(data: &[u8]) -> (u64, Vec<(usize, usize, usize)>) {
    let db = Db::open(data).unwrap();
    let b = db.bucket(b"key").unwrap().unwrap();
    let BucketRoot::Page(mut id) = b.root().clone() else {
        panic!("key bucket is inline")
    };
    while db.page(id).unwrap().node().unwrap().is_branch() {
        id = db.page(id).unwrap().node().unwrap().branch(0).unwrap().pgid;
    }
    let p = db.page(id).unwrap();
    let n = p.node().unwrap();
    let elems = (0..n.count())
        .map(|i| {
            let e = n.leaf(i).unwrap();
            (e.key_offset, e.key.len(), e.value.len())
        })
        .collect();
    (id, elems)
}

fn write(dir: &Path, name: &str, img: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, img).unwrap();
    p
}

#[track_caller]
fn integrity_error(o: &std::process::Output, file: &Path, needle: &str) {
    assert_exit(o, 3);
    assert_eq!(stdout(o), "", "an answer was printed from damaged data");
    let e = stderr(o);
    assert!(
        e.contains(&format!("integrity problem in {}", file.display())),
        "{e}"
    );
    assert!(e.contains(needle), "want {needle:?} in: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn damaged_snapshots_give_exit_3_and_no_answer() {
    let dir = tempfile::TempDir::new().unwrap();
    let (snap, _) = snapshot(dir.path());
    let good = std::fs::read(&snap).unwrap();
    let db_len = good.len() - 32;
    let (leaf, elems) = key_leaf(&good[..db_len]);
    let page_at = leaf as usize * 4096;
    let s = snap.to_str().unwrap();

    // 1. Keys out of order within a leaf (structure broken): the cursor refuses the page.
    let mut img = good.clone();
    let (k1, _, _) = elems[1];
    img[page_at + k1..page_at + k1 + 8].fill(0);
    let bad = write(dir.path(), "order.db", &img);
    let b = bad.to_str().unwrap();
    let page = format!("page {leaf}");
    integrity_error(&run_lifeboat(["get", b, "/k/", "--prefix"]), &bad, &page);
    integrity_error(
        &run_lifeboat(["get", b, "/k/", "--prefix", "--no-verify"]),
        &bad,
        "not greater than the previous key",
    );
    // diff names the damaged side, whichever it is, and not the good one.
    for args in [["diff", s, b], ["diff", b, s]] {
        let o = run_lifeboat(args);
        integrity_error(&o, &bad, &page);
        assert!(!stderr(&o).contains(&format!("in {s}")), "{}", stderr(&o));
    }
    // With -o json the only thing on stdout is the error document: no answer.
    let o = run_lifeboat(["diff", "-o", "json", s, b]);
    assert_exit(&o, 3);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    assert_eq!(doc["exit_code"], 3, "{doc}");
    assert_eq!(doc["file"].as_str(), Some(b), "{doc}");
    assert!(doc["page"].is_u64(), "{doc}");
    assert!(
        doc.get("added").is_none() && doc.get("removed").is_none(),
        "{doc}"
    );

    // 2. One flipped byte inside a value (structure intact): only the SHA-256 trailer
    //    tells, and it is compared before anything is printed.
    let mut img = good.clone();
    let (k0, klen, vlen) = elems[0];
    img[page_at + k0 + klen + vlen - 1] ^= 0x01;
    let flipped = write(dir.path(), "value.db", &img);
    let f = flipped.to_str().unwrap();
    integrity_error(
        &run_lifeboat(["get", f, "/k/", "--prefix"]),
        &flipped,
        "SHA-256",
    );
    integrity_error(&run_lifeboat(["diff", s, f]), &flipped, "SHA-256");
    // --no-verify skips the digest and says so.
    let o = run_lifeboat(["get", "-o", "json", f, "/k/000", "--no-verify"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("--no-verify"), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verification"][0]["digest"], "skipped", "{j}");
    let o = run_lifeboat(["get", "-o", "json", s, "/k/000"]);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verification"][0]["digest"], "verified", "{j}");
    assert_eq!(j["verification"][0]["source"], "trailer", "{j}");

    // 3. Cut inside the trailer (size % 4096 == 16): not a raw db, damaged.
    let cut = write(dir.path(), "cut.db", &good[..good.len() - 16]);
    assert_eq!(std::fs::metadata(&cut).unwrap().len() % 4096, 16);
    let needle = "truncated or extra bytes after the last page";
    integrity_error(
        &run_lifeboat(["get", cut.to_str().unwrap(), "/k/000"]),
        &cut,
        needle,
    );
    let o = run_lifeboat(["inspect", cut.to_str().unwrap()]);
    assert_exit(&o, 3);
    assert!(stdout(&o).contains(needle), "{}", stdout(&o));

    // 4. Garbage after the trailer.
    let mut img = good.clone();
    img.extend_from_slice(&[0x5a; 100]);
    let extra = write(dir.path(), "extra.db", &img);
    integrity_error(
        &run_lifeboat(["diff", s, extra.to_str().unwrap()]),
        &extra,
        needle,
    );
    let o = run_lifeboat(["inspect", "-o", "json", extra.to_str().unwrap()]);
    assert_exit(&o, 3);

    // 5. Not a database at all: exit 3 from every reader, naming the file.
    let junk: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let junk = write(dir.path(), "junk.db", &junk);
    let j = junk.to_str().unwrap();
    integrity_error(&run_lifeboat(["get", j, "/k/"]), &junk, "meta");
    integrity_error(&run_lifeboat(["diff", s, j]), &junk, "meta");
    assert_exit(&run_lifeboat(["inspect", j]), 3);
}

#[test]
fn get_takes_key_bytes_hex_and_reports_the_current_revision() {
    let dir = tempfile::TempDir::new().unwrap();
    let (snap, rev) = snapshot(dir.path());
    let s = snap.as_os_str();
    let o = run_lifeboat([OsStr::new("get"), s, OsStr::from_bytes(ODD_KEY)]);
    assert_exit(&o, 0);
    let mut want = ODD_KEY.to_vec();
    want.extend_from_slice(b"\nodd-value\n");
    assert_eq!(o.stdout, want);
    let hex: String = ODD_KEY.iter().map(|b| format!("{b:02x}")).collect();
    let o = run_lifeboat([OsStr::new("get"), s, OsStr::new("--hex"), OsStr::new(&hex)]);
    assert_exit(&o, 0);
    assert_eq!(o.stdout, want);
    let o = run_lifeboat([OsStr::new("get"), s, OsStr::new("--hex"), OsStr::new("zz")]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--hex"), "{}", stderr(&o));
    // --rev N: the answer at N, the header at the store's current revision (etcdctl).
    let o = run_lifeboat([
        OsStr::new("get"),
        OsStr::new("-o"),
        OsStr::new("json"),
        s,
        OsStr::new("/k/001"),
        OsStr::new("--rev"),
        OsStr::new("10"),
    ]);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["header"]["revision"], rev, "{j}");
    assert_eq!(j["kvs"][0]["value"], "dmFsdWUtMQ==", "{j}"); // "value-1"
}

#[test]
fn live_db_copy_is_private_and_removed() {
    let bins = etcd35();
    let c = Cluster::single(&bins, Opts::default());
    c.put("/live/1", "v1");
    let db = c.data_dir(0).join("member/snap/db");
    let tmp = tempfile::TempDir::new().unwrap();
    let run = |args: &[&str]| {
        Command::new(lifeboat())
            .args(args)
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let d = db.to_str().unwrap();
    let o = run(&["get", "--copy-live", d, "/live/1"]);
    // (The member commits its db in batches: whether /live/1 is in the file yet is not
    // for this test to say.)
    assert_exit(&o, 0);
    // The copy was made there (the warning names it) and is gone.
    assert!(
        stderr(&o).contains(&tmp.path().display().to_string()),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // Also on an error path (a revision in the future: exit 2).
    let o = run(&["get", "--copy-live", d, "/live/1", "--rev", "999999"]);
    assert_exit(&o, 2);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
