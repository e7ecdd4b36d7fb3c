//! Restore drills: etcd 3.5.16 (Debian trixie, has `--bump-revision`), and starting a
//! cluster from a restore plan's own flags.

use std::path::PathBuf;
use std::time::Duration;

use super::{Bins, Cluster, Member, TempDir};

/// etcd 3.5.16 unpacked by scripts/etcd-trixie.sh (LIFEBOAT_ETCD3516_DIR overrides).
pub fn etcd3516() -> Bins {
    let dir = std::env::var_os("LIFEBOAT_ETCD3516_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("LIFEBOAT_ETCD_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("lifeboat"))
                })
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lifeboat")
                });
            cache.join("etcd-trixie/usr/bin")
        });
    let hint = "run scripts/setup.sh (scripts/etcd-trixie.sh unpacks etcd 3.5.16)";
    Bins {
        version: "3.5.16",
        etcd: super::check_bin(dir.join("etcd"), hint),
        etcdctl: super::check_bin(dir.join("etcdctl"), hint),
        etcdutl: Some(super::check_bin(dir.join("etcdutl"), hint)),
    }
}

/// Start every member of `plan.json` with exactly the plan's `etcd_flags` (plus logging),
/// and wait until the cluster is healthy.
pub fn start_from_plan(bins: &Bins, plan: &serde_json::Value) -> Cluster {
    let dir = TempDir::new().unwrap();
    let mut members = Vec::new();
    for m in plan["members"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        let mut args: Vec<String> = m["etcd_flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        args.push("--logger=zap".into());
        args.push("--log-level=warn".into());
        members.push(Member {
            log: dir.path().join(format!("{name}.log")),
            client_url: m["client_urls"][0].as_str().unwrap().to_string(),
            peer_url: m["peer_urls"][0].as_str().unwrap().to_string(),
            data_dir: PathBuf::from(m["data_dir"].as_str().unwrap()),
            name,
            child: None,
            args,
            etcd: bins.etcd.clone(),
        });
    }
    let n = members.len();
    let mut c = Cluster {
        bins: bins.clone(),
        dir,
        members,
        token: plan["cluster_token"].as_str().unwrap().to_string(),
        tls: None,
    };
    for i in 0..n {
        c.spawn(i);
    }
    c.wait_healthy(Duration::from_secs(60));
    c
}
