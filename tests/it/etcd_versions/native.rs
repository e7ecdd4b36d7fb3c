//! The native restore writer on 3.6 and 3.7: its files against that release's etcdutl, and
//! members it writes booted on that release with 1 and 3 members.

use super::*;

/// The native writer in the version's style against that version's etcdutl.
fn equivalent(version: &str, n: usize, bump: Option<u64>) {
    let s = source(version);
    let style = RestoreStyle::for_version(s.bins.version);
    let tmp = TempDir::new().unwrap();
    let ms = members(n, false);
    let token = "equivalence-token";
    let written = native(&s.snap, &ms, token, bump, &tmp.path().join("native"), style);
    let cluster: Vec<String> = ms.iter().map(|(n, u)| format!("{n}={u}")).collect();
    for (i, (name, url)) in ms.iter().enumerate() {
        let theirs = tmp.path().join("etcdutl").join(name);
        let mut args = vec![
            "snapshot".to_string(),
            "restore".into(),
            s.snap.display().to_string(),
            format!("--name={name}"),
            format!("--initial-cluster={}", cluster.join(",")),
            format!("--initial-cluster-token={token}"),
            format!("--initial-advertise-peer-urls={url}"),
            format!("--data-dir={}", theirs.display()),
        ];
        if let Some(b) = bump {
            args.push(format!("--bump-revision={b}"));
            args.push("--mark-compacted".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdutl(&s.bins, &args);
        let ours = &written[i].data_dir;
        let what = format!("etcd {} n={n} bump={bump:?} {name}", s.bins.version);
        let wal = "member/wal/0000000000000000-0000000000000000.wal";
        assert!(
            std::fs::read(ours.join(wal)).unwrap() == std::fs::read(theirs.join(wal)).unwrap(),
            "{what}: WAL differs"
        );
        let snap = format!("member/snap/0000000000000001-{n:016x}.snap");
        if n == 1 {
            assert!(
                std::fs::read(ours.join(&snap)).unwrap()
                    == std::fs::read(theirs.join(&snap)).unwrap(),
                "{what}: .snap differs"
            );
        } else {
            assert_eq!(
                snap_normalized(&ours.join(&snap)),
                snap_normalized(&theirs.join(&snap)),
                "{what}: .snap"
            );
        }
        let (x, y) = (
            buckets(&ours.join("member/snap/db")),
            buckets(&theirs.join("member/snap/db")),
        );
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (b, ex) in &x {
            assert_eq!(ex, &y[b], "{what}: bucket {}", String::from_utf8_lossy(b));
        }
        let st = etcdutl(
            &s.bins,
            &[
                "snapshot",
                "status",
                "-w",
                "json",
                ours.join("member/snap/db").to_str().unwrap(),
            ],
        );
        let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        assert_eq!(st["version"], storage_version(&s.bins), "{what}");
    }
}

#[test]
fn native_writer_equals_etcdutl_3_6() {
    equivalent("3.6", 3, None);
    equivalent("3.6", 1, None);
    equivalent("3.6", 1, Some(1000));
}

#[test]
fn native_writer_equals_etcdutl_3_7() {
    equivalent("3.7", 3, None);
    equivalent("3.7", 1, None);
    equivalent("3.7", 1, Some(1000));
}

/// Restore `src` natively in `on`'s style and boot `on` with `n` members: every key and
/// revision, hashkv equal to the backup's (without a bump), ids as written.
fn boots(src: &Source, on: &Bins, n: usize, bump: Option<u64>) {
    let tmp = TempDir::new().unwrap();
    let ms = members(n, true);
    let style = RestoreStyle::for_version(on.version);
    let written = native(&src.snap, &ms, "boot-token", bump, tmp.path(), style);
    let boot: Vec<BootMember> = written
        .iter()
        .zip(&ms)
        .map(|(w, (name, url))| BootMember {
            name: name.clone(),
            data_dir: w.data_dir.clone(),
            peer_url: url.clone(),
        })
        .collect();
    let c = Booted::start(on, on, &boot, Duration::from_secs(90));
    let what = format!(
        "{} backup on etcd {} n={n} bump={bump:?}",
        src.bins.version, on.version
    );
    for ep in &c.clients {
        let o = Command::new(&on.etcdctl)
            .arg(format!("--endpoints={ep}"))
            .args(["get", "", "--from-key", "-w", "json", "--consistency=s"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(got["kvs"], src.kvs, "{what} at {ep}");
        let want = src.revision + bump.map(|b| b as i64).unwrap_or(0);
        assert_eq!(got["header"]["revision"].as_i64(), Some(want), "{what}");
    }
    let hk = c.ctl(&["endpoint", "hashkv", "-w", "json"]);
    assert!(
        hk.status.success(),
        "{}",
        String::from_utf8_lossy(&hk.stderr)
    );
    let hk: serde_json::Value = serde_json::from_slice(&hk.stdout).unwrap();
    let hashes: Vec<u64> = hk
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["HashKV"]["hash"].as_u64().unwrap())
        .collect();
    assert_eq!(hashes.len(), n);
    if bump.is_none() {
        assert!(
            hashes.iter().all(|h| *h == src.hashkv),
            "{what}: {hashes:?} vs {}",
            src.hashkv
        );
    } else {
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{what}: {hashes:?}");
    }
    let ml = c.ctl(&["member", "list", "-w", "json"]);
    let ml: serde_json::Value = serde_json::from_slice(&ml.stdout).unwrap();
    let mut ids: Vec<u64> = ml["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ID"].as_u64().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<u64> = written.iter().map(|w| w.member_id).collect();
    want.sort();
    assert_eq!(ids, want, "{what}");
}

#[test]
fn native_restore_boots_on_3_6() {
    let s = source("3.6");
    boots(s, &s.bins, 1, None);
    boots(s, &s.bins, 3, Some(1000));
}

#[test]
fn native_restore_boots_on_3_7() {
    let s = source("3.7");
    boots(s, &s.bins, 1, None);
    boots(s, &s.bins, 3, Some(1000));
}
