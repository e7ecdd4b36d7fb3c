//! `restore test`: prove a backup restores, before anyone needs it.
//!
//! The backup is fetched (digests checked), restored into a temporary dir with lifeboat's
//! native writer (or etcd's own tool with `--etcdutl PATH`), and booted as a real single-member etcd on loopback. Only what that etcd answers
//! counts: its `hashkv` at the backup's revision must equal the hash recorded at backup
//! time (or computed offline for older manifests), and its key count the snapshot's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::Manifest;
use crate::error::IoContext;
use crate::store::Store;
use crate::{Error, Result};

pub struct TestOptions {
    /// The etcd server to boot.
    pub etcd: PathBuf,
    /// etcdutl (3.5) or etcdctl (3.4) for the restore; default: lifeboat's native writer.
    pub etcdutl: Option<PathBuf>,
    /// How long etcd may take to answer after it starts.
    pub start_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub id: String,
    pub ok: bool,
    pub revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_expected: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv: Option<u32>,
    pub keys_expected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    pub problems: Vec<String>,
    pub seconds: f64,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Failed(format!("no free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Failed(format!("no free loopback port: {e}")))
}

const NAME: &str = "lifeboat-restore-test";

/// Write the throwaway member's data dir with lifeboat's own writer, from the fetched
/// snapshot (database + etcd's 32-byte trailer), checking the manifest's digest again.
fn restore_native(snap: &Path, m: &Manifest, peer: &str, data: &Path) -> Result<()> {
    let file = crate::io::FileReader::open(snap).at(snap)?;
    let size = crate::io::ReadAt::size(&file);
    let db = file.with_size(size.saturating_sub(crate::pipeline::trailer::TRAILER_LEN as u64));
    let mut want = [0u8; 32];
    hex::decode_to_slice(&m.db_sha256, &mut want)
        .map_err(|_| Error::integrity(&m.id, "manifest db_sha256 is not a hex SHA-256"))?;
    let spec = super::native::RestoreSpec {
        members: vec![super::native::MemberSpec {
            name: NAME.into(),
            peer_urls: vec![peer.to_string()],
        }],
        token: NAME.into(),
        bump_revision: None,
        mark_compacted: false,
    };
    super::native::write_member_dir(&db, Some(want), &spec, NAME, data, None)?;
    Ok(())
}

/// Write it with etcd's tool instead (`--etcdutl PATH`: etcdutl, or etcdctl for 3.4). A
/// tool that refuses the snapshot is an integrity problem of `object`.
fn restore_with_tool(
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

/// Kills and reaps etcd however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn restore_test(store: &dyn Store, m: &Manifest, opts: &TestOptions) -> Result<TestReport> {
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("lifeboat-restore-test-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let snap = tmp.path().join("snapshot.db");
    crate::jobs::fetch::fetch(store, m, &snap, true, &|_| {})?;
    let (offline_hash, keys_expected) = offline_facts(&snap, m.revision)?;
    let mut problems = Vec::new();
    let expected = match (m.hashkv, offline_hash) {
        (Some(h), Some(o)) if h != o => {
            problems.push(format!(
                "the manifest records hashkv {h}, the stored snapshot computes to {o}"
            ));
            Some(h)
        }
        (Some(h), _) => Some(h),
        (None, o) => o,
    };
    let data = tmp.path().join("data");
    let (cport, pport) = (free_port()?, free_port()?);
    let peer = format!("http://127.0.0.1:{pport}");
    let client = format!("http://127.0.0.1:{cport}");
    match &opts.etcdutl {
        Some(tool) => {
            let object = format!("{}/{}", store.location(), m.object);
            restore_with_tool(tool, &snap, &peer, &data, &object)?
        }
        None => restore_native(&snap, m, &peer, &data)?,
    }
    let log = tmp.path().join("etcd.log");
    let logf = std::fs::File::create(&log).at(&log)?;
    let child = Command::new(&opts.etcd)
        .arg("--name=lifeboat-restore-test")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=lifeboat-restore-test={peer}"))
        .arg("--initial-cluster-token=lifeboat-restore-test")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().at(&log)?)
        .stderr(logf)
        .spawn()
        .map_err(|e| {
            Error::Usage(format!(
                "cannot run {}: {e} (install etcd, or give it with --etcd PATH)",
                opts.etcd.display()
            ))
        })?;
    let mut guard = Guard(child);
    let answer = ask(&client, m.revision, opts.start_timeout, &mut guard.0, &log);
    drop(guard);
    let (hash, keys) = match answer {
        Ok(x) => x,
        Err(e) => {
            problems.push(e);
            (None, None)
        }
    };
    if let (Some(want), Some(got)) = (expected, hash) {
        if want != got {
            problems.push(format!(
                "restored etcd answers hashkv {got} at revision {}, the backup's is {want}",
                m.revision
            ));
        }
    }
    if let Some(k) = keys {
        if k != keys_expected {
            problems.push(format!(
                "restored etcd holds {k} keys, the snapshot {keys_expected}"
            ));
        }
    }
    Ok(TestReport {
        id: m.id.clone(),
        ok: problems.is_empty(),
        revision: m.revision,
        hashkv_expected: expected,
        hashkv: hash,
        keys_expected,
        keys,
        problems,
        seconds: (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

/// hashkv at `rev` and the live key count, read offline from the fetched snapshot.
fn offline_facts(snap: &Path, rev: i64) -> Result<(Option<u32>, u64)> {
    let input = crate::offline::open_input(
        &snap.display().to_string(),
        &crate::offline::OpenOptions::default(),
    )?;
    let ins = crate::offline::inspect(
        &input,
        &crate::format::etcd::report::ReportOptions {
            hashkv_rev: rev,
            k8s: false,
            by_namespace: false,
            top: 0,
            max_problems: 10,
        },
    );
    if !ins.report.ok {
        return Err(Error::integrity(
            snap.display().to_string(),
            format!(
                "the fetched snapshot has problems: {}",
                ins.report
                    .problems
                    .iter()
                    .map(|p| p.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    Ok((ins.report.hashkv, ins.report.live_keys))
}

/// Wait for etcd to answer, then ask its hashkv at `rev` and its key count.
fn ask(
    client: &str,
    rev: i64,
    timeout: Duration,
    child: &mut Child,
    log: &Path,
) -> std::result::Result<(Option<u32>, Option<u64>), String> {
    let cfg = crate::source::etcd::ConnectConfig {
        endpoints: vec![client.to_string()],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(format!(
                "restored etcd exited ({st}) instead of starting: {}",
                last.trim()
            ));
        }
        let r = rt.block_on(async {
            let mut c = cfg
                .connect_one(client, false)
                .await
                .map_err(|e| e.to_string())?;
            let h = c.hash_kv(rev).await.map_err(|e| e.to_string())?;
            let opts = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only();
            let g = c.get("", Some(opts)).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((h.hash(), g.count()))
        });
        match r {
            Ok((h, n)) => return Ok((Some(h), Some(n.max(0) as u64))),
            Err(e) if start.elapsed() > timeout => {
                return Err(format!(
                    "restored etcd did not answer within {timeout:?}: {e}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
