//! Helpers for the live-cluster error tests: certificates that are wrong in one way, and
//! members frozen with SIGSTOP.

use std::path::{Path, PathBuf};

use std::process::Command;

use super::{Cluster, Tls};

/// Like [`Tls::generate`], plus a second server certificate of the same CA that names only
/// `localhost` (no IP SAN): written over the first after the cluster has started (etcd
/// reads its certificate files at each handshake), so a client dialling 127.0.0.1 must
/// refuse it while the harness could still check the cluster's health.
pub struct TlsNoIpSan {
    pub tls: Tls,
    pub no_ip_cert: PathBuf,
    pub no_ip_key: PathBuf,
}

impl TlsNoIpSan {
    pub fn generate() -> TlsNoIpSan {
        let (tls, no_ip_cert, no_ip_key) = Tls::generate_with_no_ip_server();
        TlsNoIpSan {
            tls,
            no_ip_cert,
            no_ip_key,
        }
    }

    /// Make the running server present the certificate without the IP SAN.
    pub fn swap_in_no_ip_cert(&self) {
        std::fs::copy(&self.no_ip_cert, &self.tls.server_cert).unwrap();
        std::fs::copy(&self.no_ip_key, &self.tls.server_key).unwrap();
    }
}

/// The process id of member `i`.
pub fn pid(c: &Cluster, i: usize) -> u32 {
    c.members[i].child.as_ref().expect("member running").id()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A member stopped with SIGSTOP (a frozen process: its sockets still accept connections);
/// continued with SIGCONT when dropped.
pub struct Frozen(u32);

impl Frozen {
    pub fn new(c: &Cluster, i: usize) -> Frozen {
        let p = pid(c, i);
        signal(p, "STOP");
        Frozen(p)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// Let user 65534 reach `dir` and read `files` (tests run as root; the unreadable case is
/// run as that user).
pub fn open_to_nobody(dir: &Path, files: &[&PathBuf]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}
