//! check-member against real etcd 3.5.1 and 3.4.23 data dirs: a fixture of three WAL
//! segments per version (built once, kept under target/tmp), copied and damaged per test.
//! Every test also starts the real etcd on the damaged copy and requires that lifeboat's
//! prediction (`etcd_starts`) is what etcd did.
use crate::common::*;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

mod survivors;

/// Build (or reuse) the fixture for one etcd version: a single member with
/// `--snapshot-count 100` and ~140 MB of writes (three 64 MB WAL segments, several snap
/// files), stopped cleanly.
fn fixture(bins: &Bins) -> PathBuf {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    let _g = LOCK.get_or_init(|| Mutex::new(())).lock().unwrap();
    let root =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("wal-fixture-{}", bins.version));
    let data = root.join("m0");
    if root.join("complete").exists() {
        return data;
    }
    let _ = std::fs::remove_dir_all(&root);
    let mut c = Cluster::single(
        bins,
        Opts {
            snapshot_count: Some(100),
            ..Opts::default()
        },
    );
    c.fill("/fx/", 70_000, 2000);
    c.put("/fx/last", "x");
    c.stop(0);
    copy_dir(c.data_dir(0), &data);
    std::fs::write(root.join("complete"), "").unwrap();
    data
}

struct Case {
    _tmp: TempDir,
    dir: PathBuf,
    bins: Bins,
}

impl Case {
    fn new(bins: Bins) -> Case {
        let src = fixture(&bins);
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("m0");
        copy_dir(&src, &dir);
        Case {
            _tmp: tmp,
            dir,
            bins,
        }
    }
    fn wal_dir(&self) -> PathBuf {
        self.dir.join("member/wal")
    }
    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.wal_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        v
    }
    fn snaps(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("member/snap"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .collect();
        v.sort();
        v
    }
    /// Entry records as `wal dump -o json` reports them.
    fn entries(&self) -> Vec<serde_json::Value> {
        let o = run_lifeboat(
            ["wal", "dump", "-o", "json", "--type", "entry"]
                .iter()
                .map(|s| s.to_string())
                .chain([self.dir.display().to_string()]),
        );
        assert_exit(&o, 0);
        json(&o).as_array().unwrap().clone()
    }
    fn check(&self) -> (std::process::Output, serde_json::Value) {
        let o = run_lifeboat(["check-member", "-o", "json", self.dir.to_str().unwrap()]);
        let j = json(&o);
        (o, j["members"][0].clone())
    }
    /// Run check-member, then real etcd; assert lifeboat predicted etcd.
    fn verdict_matches_etcd(&self, what: &str, verdict: &str, code: i32) -> serde_json::Value {
        let (o, r) = self.check();
        assert_eq!(r["verdict"], verdict, "{what}: {r:#}");
        assert_exit(&o, code);
        let predicted = r["etcd_starts"].as_bool().unwrap();
        let got = start_on_dir(&self.bins, &self.dir, "m0", Duration::from_secs(40));
        // "Starts" = comes up and serves (endpoint status). A member whose db is ahead of its
        // repaired WAL serves but cannot commit until it has passed the db's index; lifeboat
        // warns about that separately.
        assert_eq!(
            got.serving,
            predicted,
            "{what}: lifeboat predicted etcd_starts={predicted}, etcd serving={} healthy={} exited={}\n{}\n--- etcd log\n{}",
            got.serving,
            got.healthy,
            got.exited,
            serde_json::to_string_pretty(&r).unwrap(),
            tail(&got.log)
        );
        if !predicted {
            assert!(got.exited, "{what}: etcd neither serving nor exited");
        }
        let did = if got.healthy {
            "started"
        } else if got.serving {
            "started, requests time out"
        } else {
            "refused"
        };
        eprintln!(
            "VERDICT etcd {} | {what} | lifeboat {verdict} (etcd_starts={predicted}) | etcd {did}",
            self.bins.version
        );
        r
    }
}

fn tail(s: &str) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(8)..].join("\n")
}

fn patch(path: &Path, off: u64, f: impl FnOnce(&mut Vec<u8>)) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    file.seek(SeekFrom::Start(off)).unwrap();
    let mut buf = vec![0u8; 512];
    let n = file.read(&mut buf).unwrap();
    buf.truncate(n);
    f(&mut buf);
    file.seek(SeekFrom::Start(off)).unwrap();
    file.write_all(&buf).unwrap();
}

fn entry_in(entries: &[serde_json::Value], file: &Path, nth_from_end: usize) -> u64 {
    let name = file.file_name().unwrap().to_str().unwrap();
    let v: Vec<&serde_json::Value> = entries.iter().filter(|e| e["file"] == name).collect();
    v[v.len() - 1 - nth_from_end]["offset"].as_u64().unwrap()
}

fn each_version(f: impl Fn(Bins)) {
    for bins in [etcd35(), etcd34()] {
        f(bins);
    }
}

#[test]
fn clean_copy_is_healthy() {
    each_version(|bins| {
        let c = Case::new(bins);
        assert!(c.segments().len() >= 3, "fixture needs 3 segments");
        let r = c.verdict_matches_etcd("clean copy", "healthy", 0);
        assert_eq!(
            r["problems"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["severity"] != "warning")
                .count(),
            0,
            "{r:#}"
        );
        assert!(r["last_index"].as_u64().unwrap() > 700);
        assert_eq!(r["last_index"], r["commit"]);
    });
}

#[test]
fn flipped_byte_mid_log_is_fatal() {
    each_version(|bins| {
        let c = Case::new(bins);
        let segs = c.segments();
        let entries = c.entries();
        // Inside the data of an entry in the middle of the first segment.
        let mid = entries
            .iter()
            .filter(|e| e["file"] == segs[0].file_name().unwrap().to_str().unwrap())
            .nth(150)
            .unwrap();
        let rec = mid["offset"].as_u64().unwrap();
        let index = mid["index"].as_u64().unwrap();
        patch(&segs[0], rec + 600, |b| b[0] ^= 0x01);
        let r = c.verdict_matches_etcd("one flipped byte mid-log", "corrupt-wal", 3);
        let p = &r["problems"][0];
        assert_eq!(p["offset"].as_u64(), Some(rec), "{r:#}");
        assert_eq!(p["index"].as_u64(), Some(index), "{r:#}");
        assert!(p["file"]
            .as_str()
            .unwrap()
            .ends_with(segs[0].file_name().unwrap().to_str().unwrap()));
        assert!(r["lost"]["entries"].as_u64().unwrap() > 300, "{r:#}");
        assert!(r["next_steps"].to_string().contains("member add"), "{r:#}");
    });
}

#[test]
fn flipped_byte_in_last_segment_is_fatal() {
    each_version(|bins| {
        let c = Case::new(bins);
        let last = c.segments().pop().unwrap();
        let rec = entry_in(&c.entries(), &last, 10);
        patch(&last, rec + 300, |b| b[0] ^= 0x80);
        let r = c.verdict_matches_etcd("flipped byte in the last segment", "corrupt-wal", 3);
        assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec));
        assert_eq!(r["etcd_error"], "walpb: crc mismatch");
    });
}

#[test]
fn zeroed_sector_at_the_tail_is_torn() {
    each_version(|bins| {
        let c = Case::new(bins);
        let last = c.segments().pop().unwrap();
        let entries = c.entries();
        // The last big entry (before the one-key put): zero one sector in its middle.
        let rec = entry_in(&entries, &last, 1);
        let sector = (rec + 8 + 5000) / 512 * 512;
        patch(&last, sector, |b| b.fill(0));
        let r = c.verdict_matches_etcd("zeroed sector in the last record", "torn-tail", 0);
        let p = &r["problems"][0];
        assert_eq!(p["severity"], "repaired");
        assert_eq!(p["offset"].as_u64(), Some(rec), "{r:#}");
        assert_eq!(r["lost"]["entries"], 2, "{r:#}");
        // etcd kept the damaged file as .broken.
        let broken = last.with_extension("wal.broken");
        assert!(broken.exists(), "{} missing", broken.display());
    });
}

#[test]
fn truncated_tail_is_torn() {
    each_version(|bins| {
        let c = Case::new(bins);
        let last = c.segments().pop().unwrap();
        let rec = entry_in(&c.entries(), &last, 1);
        let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(rec + 8 + 1000).unwrap();
        drop(f);
        let r = c.verdict_matches_etcd("last segment truncated mid-record", "torn-tail", 0);
        assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec));
    });
}

#[test]
fn missing_middle_segment_is_fatal() {
    each_version(|bins| {
        let c = Case::new(bins);
        let segs = c.segments();
        std::fs::remove_file(&segs[1]).unwrap();
        let r = c.verdict_matches_etcd("middle segment removed", "corrupt-wal", 3);
        assert!(
            r["problems"].to_string().contains("seq 1 is missing"),
            "{r:#}"
        );
    });
}

#[test]
fn bad_snap_crc_falls_back() {
    each_version(|bins| {
        let c = Case::new(bins);
        let newest = c.snaps().pop().unwrap();
        patch(&newest, 2000, |b| b[0] ^= 0x10);
        let r = c.verdict_matches_etcd("newest snap file with a bad CRC", "corrupt-snap", 3);
        assert_eq!(r["etcd_starts"], true);
        let name = newest.file_name().unwrap().to_str().unwrap().to_string();
        let chosen = r["snapshot_file"].as_str().unwrap();
        assert!(
            chosen < name.as_str(),
            "falls back to an older snap: {chosen}"
        );
        assert!(newest.with_extension("snap.broken").exists());
    });
}

#[test]
fn missing_dir_exits_1() {
    let o = run_lifeboat(["check-member", "-o", "json", "/nonexistent/lifeboat-test"]);
    assert_exit(&o, 1);
    assert_eq!(json(&o)["members"][0]["verdict"], "missing");
}

#[test]
fn zeroed_db_page_is_corrupt_db() {
    use lifeboat::format::bolt::{BucketRoot, Db};
    use lifeboat::io::FileReader;
    each_version(|bins| {
        let c = Case::new(bins);
        let db_path = c.dir.join("member/snap/db");
        let (page, page_size) = {
            let f = FileReader::open(&db_path).unwrap();
            let db = Db::open(&f).unwrap();
            let b = db.bucket(b"key").unwrap().unwrap();
            match b.root() {
                BucketRoot::Page(p) => (*p, u64::from(db.page_size)),
                BucketRoot::Inline { .. } => panic!("key bucket inline in a 140 MB db"),
            }
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&db_path)
            .unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&vec![0u8; page_size as usize], page * page_size)
            .unwrap();
        drop(f);
        let r = c.verdict_matches_etcd("zeroed root page of bucket key in the db", "corrupt-db", 3);
        assert!(
            r["problems"][0]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("page {page}")),
            "{r:#}"
        );
    });
}

#[test]
fn zeroed_length_field_mid_tail_drops_the_rest_silently() {
    each_version(|bins| {
        let c = Case::new(bins);
        let last = c.segments().pop().unwrap();
        let entries = c.entries();
        let rec = entry_in(&entries, &last, 20);
        let index = entries
            .iter()
            .find(|e| {
                e["offset"].as_u64() == Some(rec)
                    && e["file"] == last.file_name().unwrap().to_str().unwrap()
            })
            .unwrap()["index"]
            .as_u64()
            .unwrap();
        // From the frame's length field to the end of its sector.
        let end = (rec / 512 + 1) * 512;
        patch(&last, rec, |b| b[..(end - rec) as usize].fill(0));
        let r = c.verdict_matches_etcd(
            "zeroed length field 20 entries before the end",
            "torn-tail",
            0,
        );
        assert_eq!(r["problems"][0]["offset"].as_u64(), Some(rec), "{r:#}");
        assert_eq!(r["last_index"].as_u64(), Some(index - 1));
        assert!(r["lost"]["entries"].as_u64().unwrap() >= 19, "{r:#}");
    });
}

/// A member SIGKILLed in the middle of writes: whatever state its files are in, lifeboat's
/// prediction must be what etcd does.
#[test]
fn killed_mid_write_prediction_holds() {
    for bins in [etcd35(), etcd34()] {
        let mut c = Cluster::single(
            &bins,
            Opts {
                snapshot_count: Some(50),
                ..Opts::default()
            },
        );
        let endpoints = c.endpoints();
        let ctl = bins.etcdctl.clone();
        let writer = std::thread::spawn(move || {
            // Keep writing until the member dies.
            for i in 0..2000 {
                let o = std::process::Command::new(&ctl)
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={endpoints}"))
                    .args([
                        "--command-timeout=2s",
                        "put",
                        &format!("/k/{i}"),
                        &"z".repeat(20_000),
                    ])
                    .output()
                    .unwrap();
                if !o.status.success() {
                    break;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        c.kill(0);
        writer.join().unwrap();
        let dir = c.data_dir(0).to_path_buf();
        let o = run_lifeboat(["check-member", "-o", "json", dir.to_str().unwrap()]);
        let r = json(&o)["members"][0].clone();
        let v = r["verdict"].as_str().unwrap().to_string();
        assert!(v == "healthy" || v == "torn-tail", "{r:#}");
        let got = start_on_dir(&bins, &dir, "m0", Duration::from_secs(40));
        assert!(got.serving, "etcd {}: {}", bins.version, tail(&got.log));
        eprintln!(
            "VERDICT etcd {} | SIGKILL mid-write | lifeboat {v} | etcd started",
            bins.version
        );
    }
}

/// A data dir this user may not read is `unreadable` (exit 1), never `missing`, and its
/// advice touches nothing in the cluster (text and JSON).
#[test]
fn unreadable_dir_is_not_missing() {
    let mut c = Cluster::single(&etcd35(), Opts::default());
    c.stop(0);
    let dir = c.data_dir(0).to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for d in [dir.clone(), dir.join("member")] {
        let o = member::run_lifeboat_as_nobody(["check-member", d.to_str().unwrap()]);
        assert_exit(&o, 1);
        let out = stdout(&o);
        assert!(out.contains("UNREADABLE"), "{out}");
        assert!(
            out.contains("permission denied reading")
                && out.contains("run as the etcd user or root"),
            "{out}"
        );
        assert!(out.contains("docs/member-recovery.md#unreadable"), "{out}");
        for bad in ["member remove", "member add", "MISSING", "mv "] {
            assert!(!out.contains(bad), "{bad:?} in:\n{out}");
        }
        let o = member::run_lifeboat_as_nobody(["check-member", "-o", "json", d.to_str().unwrap()]);
        assert_exit(&o, 1);
        let j = json(&o);
        assert_eq!(j["members"][0]["verdict"], "unreadable", "{j:#}");
        assert!(!j.to_string().contains("member remove"), "{j:#}");
        // wal dump says the same, with the same exit code.
        let o = member::run_lifeboat_as_nobody(["wal", "dump", d.to_str().unwrap()]);
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert!(
            err.contains("permission denied reading")
                && err.contains("run as the etcd user or root"),
            "{err}"
        );
        // The same dir read by root is healthy.
        let o = run_lifeboat(["check-member", d.to_str().unwrap()]);
        assert_exit(&o, 0);
    }
}

/// A data dir a running etcd holds is said to be live, not judged.
#[test]
fn running_etcd_is_not_judged() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let dir = c.data_dir(0).to_str().unwrap().to_string();
    let o = run_lifeboat(["check-member", &dir]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("RUNNING"), "{out}");
    assert!(out.contains("etcd is running on this data dir"), "{out}");
    assert!(out.contains("held by pid"), "{out}");
    assert!(
        out.contains("stop it first, or use `lifeboat status`"),
        "{out}"
    );
    assert!(!out.contains("member remove"), "{out}");
    let o = run_lifeboat(["check-member", "-o", "json", &dir]);
    assert_exit(&o, 1);
    assert_eq!(json(&o)["members"][0]["verdict"], "running");
}

/// `wal dump` and `check-member` give an empty only WAL segment the same verdict, message and
/// exit code; the advice links the repo's own recovery doc.
#[test]
fn empty_only_segment_same_verdict_everywhere() {
    let mut c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    c.stop(0);
    let dir = c.data_dir(0).to_path_buf();
    let segs: Vec<PathBuf> = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(segs.len(), 1);
    std::fs::write(&segs[0], b"").unwrap();
    let d = dir.to_str().unwrap();
    let o = run_lifeboat(["check-member", "-o", "json", d]);
    assert_exit(&o, 3);
    let r = json(&o)["members"][0].clone();
    assert_eq!(r["verdict"], "corrupt-wal", "{r:#}");
    let message = r["problems"][0]["message"].as_str().unwrap().to_string();
    for args in [vec!["wal", "dump", d], vec!["wal", "dump", "-o", "json", d]] {
        let o = run_lifeboat(&args);
        assert_exit(&o, 3);
        let err = stderr(&o);
        assert!(err.contains("corrupt-wal"), "{err}");
        assert!(err.contains(&message), "{message:?} not in {err}");
    }
    let o = run_lifeboat(["check-member", d]);
    assert_exit(&o, 3);
    let out = stdout(&o);
    assert!(out.contains(&message), "{out}");
    assert!(out.contains("docs/member-recovery.md#corrupt-wal"), "{out}");
    assert!(
        out.contains("docs/member-recovery.md#replace-the-member"),
        "{out}"
    );
    assert!(!out.to_lowercase().contains("field notes"), "{out}");
}
