//! Helpers for the native restore tests: etcd 3.5.16 (Debian trixie) and booting a set of
//! restored member dirs as one cluster on fresh loopback ports.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::Bins;

/// etcd 3.5.16 unpacked by scripts/etcd-trixie.sh (or `LIFEBOAT_ETCD3516_DIR`).
pub fn etcd3516() -> Bins {
    let dir = std::env::var_os("LIFEBOAT_ETCD3516_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let out = Command::new("bash")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/scripts/etcd-trixie.sh"
                ))
                .output()
                .expect("bash must be installed");
            assert!(
                out.status.success(),
                "etcd 3.5.16 not available: run scripts/setup.sh (scripts/etcd-trixie.sh): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        });
    let bin = |n: &str| {
        let p = dir.join(n);
        assert!(
            p.is_file(),
            "{} not found: run scripts/etcd-trixie.sh",
            p.display()
        );
        p
    };
    Bins {
        version: "3.5.16",
        etcd: bin("etcd"),
        etcdctl: bin("etcdctl"),
        etcdutl: Some(bin("etcdutl")),
    }
}

/// Restored members running as one cluster; killed on drop.
pub struct Booted {
    pub clients: Vec<String>,
    pub logs: Vec<PathBuf>,
    children: Vec<Child>,
    etcdctl: PathBuf,
}

/// One member to boot: name, data dir, the peer URL it was restored with.
pub struct BootMember {
    pub name: String,
    pub data_dir: PathBuf,
    pub peer_url: String,
}

impl Booted {
    /// Start every member (their peer URLs are those of the restore) and wait until a
    /// linearizable read succeeds, i.e. a leader was elected. Panics with the logs if
    /// that does not happen within `limit`.
    pub fn start(bins: &Bins, ctl: &Bins, members: &[BootMember], limit: Duration) -> Booted {
        let cluster: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        let mut b = Booted {
            clients: Vec::new(),
            logs: Vec::new(),
            children: Vec::new(),
            etcdctl: ctl.etcdctl.clone(),
        };
        for m in members {
            let client = format!("http://127.0.0.1:{}", super::free_port());
            let log_path = m.data_dir.with_extension("etcd.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(&bins.etcd)
                .arg(format!("--name={}", m.name))
                .arg(format!("--data-dir={}", m.data_dir.display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={}", m.peer_url))
                .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
                .arg(format!("--initial-cluster={}", cluster.join(",")))
                .arg("--logger=zap")
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bins.etcd.display()));
            b.children.push(child);
            b.clients.push(client);
            b.logs.push(log_path);
        }
        let start = Instant::now();
        loop {
            if b.ctl(&["get", "x"]).status.success() {
                return b;
            }
            if start.elapsed() > limit
                || b.children
                    .iter_mut()
                    .any(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                let logs: Vec<String> = b
                    .logs
                    .iter()
                    .map(|l| {
                        let s = std::fs::read_to_string(l).unwrap_or_default();
                        let lines: Vec<&str> = s.lines().collect();
                        lines[lines.len().saturating_sub(15)..].join("\n")
                    })
                    .collect();
                panic!(
                    "{} did not elect a leader:\n{}",
                    bins.version,
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// etcdctl against every member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(&self.etcdctl)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.clients.join(",")))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
