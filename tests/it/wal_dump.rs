//! `lifeboat wal dump` on a real etcd 3.5.1 and 3.4.23 WAL: every kind of request it should
//! describe, filters, JSON, and a damaged record.
use crate::common::*;

fn dump(dir: &str, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["wal".to_string(), "dump".to_string(), dir.to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    run_lifeboat(&a)
}

#[test]
fn dump_describes_requests() {
    for bins in [etcd35(), etcd34()] {
        let mut c = Cluster::single(&bins, Opts::default());
        c.put("/d/a", "hello");
        c.ctl_ok(&["put", "/d/b", "x"]);
        c.ctl_ok(&["del", "--prefix", "/d/"]);
        c.ctl_ok(&["lease", "grant", "300"]);
        c.ctl_ok(&["compact", "2"]);
        c.stop(0);
        let dir = c.data_dir(0).display().to_string();
        let o = dump(&dir, &[]);
        assert_exit(&o, 0);
        let out = stdout(&o);
        for want in [
            " crc ",
            " metadata member ",
            "conf-change",
            "add-node",
            "\"peerURLs\"",
            "put \"/d/a\" (5 bytes)",
            "delete prefix \"/d/\"",
            "lease grant",
            "compact to revision 2",
            "hardstate term",
        ] {
            assert!(
                out.contains(want),
                "etcd {}: {want:?} missing:\n{out}",
                bins.version
            );
        }
        // Filters.
        let o = dump(&dir, &["--type", "put"]);
        assert_exit(&o, 0);
        let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let o = dump(&dir, &["-o", "json", "--type", "entry"]);
        let j = json(&o);
        let entries = j.as_array().unwrap();
        let last = entries.last().unwrap()["index"].as_u64().unwrap();
        let o = dump(
            &dir,
            &[
                "-o",
                "json",
                "--from-index",
                &last.to_string(),
                "--type",
                "entry",
            ],
        );
        assert_eq!(json(&o).as_array().unwrap().len(), 1);
        assert!(entries.iter().any(|e| e["request"] == "compaction"));
        assert!(entries.iter().any(|e| e["member"]["peerURLs"].is_array()));

        // A damaged record: shown where etcd stops, exit 3.
        let seg = std::fs::read_dir(c.data_dir(0).join("member/wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "wal"))
            .unwrap();
        let put_off = entries.iter().find(|e| e["request"] == "put").unwrap()["offset"]
            .as_u64()
            .unwrap();
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, put_off + 20).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], put_off + 20).unwrap();
        let o = dump(&dir, &[]);
        assert_exit(&o, 3);
        let out = stdout(&o);
        assert!(out.contains("damaged"), "{out}");
        assert!(out.contains("salvaged"), "{out}");
    }
}
