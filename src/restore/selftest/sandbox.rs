//! The sandbox's own copy of the backup: written with lifeboat's native writer (or etcd's
//! tool), its auth switched off, and the loopback port it listens on.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::InFile;
use crate::error::IoContext;
use crate::format::bolt::write::{cow_patch, Edit};
use crate::format::bolt::Db;
use crate::format::etcd::buckets;
use crate::{Error, Result};

/// What the sandbox found in the backup's auth buckets.
pub(super) struct SandboxAuth {
    pub(super) enabled: bool,
    pub(super) users: Vec<String>,
    pub(super) roles: Vec<String>,
}

/// Read the restored copy's users and roles and, when auth is enabled, turn the flag off
/// in that copy (a copy-on-write transaction written in place: pages, sync, meta, sync).
/// The copy is the sandbox's own; the backup is not touched.
pub(super) fn sandbox_auth_off(db_path: &Path) -> Result<SandboxAuth> {
    let file = crate::io::FileReader::open(db_path).at(db_path)?;
    let name = db_path.display().to_string();
    let (auth, patch) = {
        let db = Db::open(&file).map_err(|e| e.in_file(&name))?;
        let names = |b: &[u8]| -> Result<Vec<String>> {
            let mut out = Vec::new();
            if let Some(b) = db.bucket(b).map_err(|e| e.in_file(&name))? {
                let mut c = b.cursor();
                while let Some(e) = c.next().map_err(|e| e.in_file(&name))? {
                    out.push(String::from_utf8_lossy(e.key).into_owned());
                }
            }
            Ok(out)
        };
        let users = names(buckets::AUTH_USERS)?;
        let roles = names(buckets::AUTH_ROLES)?;
        let enabled = match db.bucket(buckets::AUTH).map_err(|e| e.in_file(&name))? {
            Some(b) => b
                .get(b"authEnabled")
                .map_err(|e| e.in_file(&name))?
                .is_some_and(|v| v.first() == Some(&1)),
            None => false,
        };
        let patch = if enabled {
            let off = Edit {
                bucket: buckets::AUTH.to_vec(),
                clear: false,
                puts: vec![(b"authEnabled".to_vec(), vec![0])],
            };
            Some(cow_patch(&db, &[off]).map_err(|e| e.in_file(&name))?)
        } else {
            None
        };
        (
            SandboxAuth {
                enabled,
                users,
                roles,
            },
            patch,
        )
    };
    drop(file);
    if let Some(p) = patch {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(db_path)
            .at(db_path)?;
        f.write_all_at(&p.pages.1, p.pages.0)
            .and_then(|_| f.sync_data())
            .and_then(|_| f.write_all_at(&p.meta.1, p.meta.0))
            .and_then(|_| f.sync_all())
            .at(db_path)?;
    }
    Ok(auth)
}

pub(super) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Failed(format!("no free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Failed(format!("no free loopback port: {e}")))
}

const NAME: &str = "lifeboat-restore-test";

/// Write the throwaway member's data dir with lifeboat's own writer, from the fetched
/// snapshot (database + etcd's 32-byte trailer, its digest checked against the manifest's
/// while it was fetched), which is moved into the data dir and patched there, not copied.
/// The files are those `style`'s etcdutl writes (the booted release's).
pub(super) fn restore_native(
    snap: &Path,
    peer: &str,
    data: &Path,
    style: crate::restore::native::RestoreStyle,
    size: u64,
) -> Result<()> {
    let spec = crate::restore::native::RestoreSpec {
        members: vec![crate::restore::native::MemberSpec {
            name: NAME.into(),
            peer_urls: vec![peer.to_string()],
        }],
        token: NAME.into(),
        bump_revision: None,
        mark_compacted: false,
    };
    let target = (NAME.to_string(), data.to_path_buf(), None);
    crate::restore::native::write_member_dir_adopting(snap, size, &spec, target, style)?;
    Ok(())
}

/// Write it with etcd's tool instead (`--etcdutl PATH`: etcdutl, or etcdctl for 3.4). A
/// tool that refuses the snapshot is an integrity problem of `object`.
pub(super) fn restore_with_tool(
    tool: &Path,
    snap: &Path,
    peer: &str,
    data: &Path,
    object: &str,
) -> Result<()> {
    let o = Command::new(tool)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snap)
        .arg(format!("--name={NAME}"))
        .arg(format!("--initial-cluster={NAME}={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster-token={NAME}"))
        .arg(format!("--data-dir={}", data.display()))
        .output()
        .map_err(|e| Error::flag("--etcdutl", format!("cannot run {}: {e}", tool.display())))?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    Err(Error::integrity(
        object,
        format!(
            "{} snapshot restore refused it: {}",
            tool.display(),
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        ),
    ))
}

/// Start `etcd` as a one-member cluster on `data`, listening on the `(client, peer)` URLs,
/// its output in `log`.
pub(super) fn start_sandbox(
    etcd: &Path,
    data: &Path,
    (client, peer): (&str, &str),
    log: &Path,
) -> Result<Child> {
    let logf = std::fs::File::create(log).at(log)?;
    Command::new(etcd)
        .arg("--name=lifeboat-restore-test")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=lifeboat-restore-test={peer}"))
        .arg("--initial-cluster-token=lifeboat-restore-test")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().at(log)?)
        .stderr(logf)
        .spawn()
        .map_err(|e| {
            Error::Usage(format!(
                "cannot run {}: {e} (install etcd, or give it with --etcd PATH)",
                etcd.display()
            ))
        })
}
