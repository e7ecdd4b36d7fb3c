//! Helpers for the member (data dir) tests.

use std::process::{Command, Output, Stdio};

/// Run lifeboat as the unprivileged user `nobody` (tests run as root, which reads anything):
/// how a permission problem is reproduced.
pub fn run_lifeboat_as_nobody<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(super::lifeboat())
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv lifeboat")
}
