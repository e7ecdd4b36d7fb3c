//! `restore test`: prove a backup restores, before anyone needs it.
//!
//! The backup is fetched (digests checked), restored into a temporary dir with lifeboat's
//! native writer (or etcd's own tool with `--etcdutl PATH`), and booted as a real single-member etcd on loopback. Only what that etcd answers
//! counts: its `hashkv` at the backup's revision must equal the hash recorded at backup
//! time (or computed offline for older manifests), and its key count the snapshot's.
//!
//! The sandbox owns its throwaway copy, so it needs no credentials: when the backup has
//! auth enabled, the copy's `auth/authEnabled` flag is turned off with the copy-on-write
//! writer (one more transaction; users, roles and every other bucket stay as they are, and
//! hashkv covers only bucket `key`), and the report names the users and roles it holds.
//!
//! It boots the etcd release the backup was taken from (the manifest's `etcd_version`,
//! found on PATH or in the etcd cache: [`super::sandbox_etcd`]), or `--etcd PATH`, and
//! writes the data dir in that release's style. The etcd it boots must be able to read the
//! backup: its version is asked first (`etcd --version`) and one older than the backup's
//! storage version is refused before anything is fetched. Errors that waiting cannot cure (a refused request, an etcd that
//! exited) end the test at once; only "not answering yet" waits for `--start-timeout`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::Manifest;
use crate::error::{EtcdErrorKind, InFile, IoContext};
use crate::{Error, Result};

pub struct TestOptions<'a> {
    /// The etcd server to boot (`--etcd`); `None`: the backup's own release, found on PATH
    /// or in the etcd cache ([`super::sandbox_etcd::choose`]).
    pub etcd: Option<PathBuf>,
    /// etcdutl (3.5) or etcdctl (3.4) for the restore; default: lifeboat's native writer.
    pub etcdutl: Option<PathBuf>,
    /// How long etcd may take to answer after it starts.
    pub start_timeout: Duration,
    /// The caller's runtime, for asking the sandbox etcd (called from a plain thread).
    pub runtime: &'a tokio::runtime::Handle,
    /// `--to-revision R`: the backup (the base) with the captured records up to R replayed.
    pub replay: Option<&'a super::pitr::Chosen>,
    /// Where those records come from; `None`: the capture segments in the backup's own
    /// destination.
    pub records: Option<&'a dyn super::pitr::RecordSource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub id: crate::catalog::BackupId,
    pub ok: bool,
    /// The version of the etcd server the sandbox booted (`etcd --version`).
    pub etcd_version: String,
    /// The etcd server binary it booted.
    pub etcd_path: String,
    /// The etcd release the backup was taken from (the manifest's `etcd_version`).
    pub backup_etcd_version: String,
    pub revision: i64,
    /// `--to-revision R` (point-in-time): `revision` is then R, not the backup's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_expected: Option<u32>,
    /// The hash etcd answers instead while it finishes the compaction it resumes at
    /// start, when that differs (no key is live at `revision`); accepted too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_while_compacting: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv: Option<u32>,
    pub keys_expected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    pub problems: Vec<String>,
    pub seconds: f64,
    /// Whether the backup has auth enabled (the sandbox ran its copy with auth off).
    pub auth_enabled: bool,
    /// The users and roles the backup holds (bucket `authUsers`, `authRoles`).
    pub users: Vec<String>,
    pub roles: Vec<String>,
}

/// `major.minor` of a version string ("3.5.16", "v3.4.23", "3.5.0").
pub(crate) fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim().trim_start_matches('v').split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.trim_end_matches(|c: char| !c.is_ascii_digit());
    Some((major, minor.parse().ok()?))
}

/// The etcd server's version, from `ETCD --version` ("etcd Version: 3.5.1"). A binary that
/// cannot run or does not say it is etcd is a usage error, found before anything else.
pub(crate) fn booted_version(etcd: &Path) -> Result<String> {
    let o = Command::new(etcd)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::flag(
                "--etcd",
                format!(
                    "cannot run {}: {e} (install etcd, or give the etcd server binary with --etcd PATH)",
                    etcd.display()
                ),
            )
        })?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| o.status.success() && major_minor(v).is_some())
        .ok_or_else(|| {
            Error::flag(
                "--etcd",
                format!(
                    "{} is not an etcd server: `{} --version` printed no etcd version; give the etcd server binary with --etcd PATH",
                    etcd.display(),
                    etcd.display()
                ),
            )
        })
}

/// Refuse an etcd older than the backup's storage version: `needs` are versions the backup
/// records (the manifest's server version, the db's cluster version), of which the newest
/// major.minor counts. An etcd that cannot read what a newer one wrote may start anyway
/// and answer something; that would be a test of nothing.
pub fn check_etcd_version(etcd: &Path, booted: &str, needs: &[(&str, &str)]) -> Result<()> {
    let Some(have) = major_minor(booted) else {
        return Ok(());
    };
    let need = needs
        .iter()
        .filter_map(|(what, v)| major_minor(v).map(|mm| (mm, *what, *v)))
        .max_by_key(|(mm, _, _)| *mm);
    match need {
        Some(((maj, min), what, v)) if have < (maj, min) => Err(Error::flag(
            "--etcd",
            format!(
                "{} is etcd {booted}, older than the backup's storage version {maj}.{min} ({what} {v}): install etcd {maj}.{min} or newer, or give it with --etcd PATH",
                etcd.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Kills and reaps etcd however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn restore_test(
    repo: &crate::catalog::Repository,
    m: &Manifest,
    opts: &TestOptions<'_>,
) -> Result<TestReport> {
    let t0 = Instant::now();
    if opts.replay.is_some() && opts.etcdutl.is_some() {
        return Err(Error::flag(
            "--etcdutl",
            "etcd's tools cannot replay captured changes: test a restore to a revision with lifeboat's own writer (leave out --etcdutl)",
        ));
    }
    // A wrong or too old etcd is known before anything is fetched.
    let chosen = super::sandbox_etcd::choose(opts.etcd.as_deref(), &m.etcd_version)?;
    let (etcd, etcd_version) = (chosen.path, chosen.version);
    check_etcd_version(
        &etcd,
        &etcd_version,
        &[("backed up from etcd", m.etcd_version.as_str())],
    )?;
    let tmp = tempfile::Builder::new()
        .prefix("lifeboat-restore-test-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let snap = tmp.path().join("snapshot.db");
    // The snapshot fetched (digests checked) and the cluster version it records checked
    // against the etcd that boots it.
    let fetch = || {
        fetch_throwaway(repo, m, &snap)?;
        if let Some(cv) = cluster_version_of(&snap)? {
            check_etcd_version(
                &etcd,
                &etcd_version,
                &[
                    ("backed up from etcd", m.etcd_version.as_str()),
                    ("cluster version", cv.as_str()),
                ],
            )?;
        }
        Ok::<_, Error>(())
    };
    let mut problems = Vec::new();
    let Expected {
        size,
        hashkv: expected,
        while_compacting,
        revision,
        keys: keys_expected,
    } = expectations(repo, m, opts, &snap, fetch, &mut problems)?;
    let data = tmp.path().join("data");
    let (cport, pport) = (free_port()?, free_port()?);
    let peer = format!("http://127.0.0.1:{pport}");
    let client = format!("http://127.0.0.1:{cport}");
    match &opts.etcdutl {
        Some(tool) => {
            let object = repo.object_of(m);
            restore_with_tool(tool, &snap, &peer, &data, &object)?
        }
        None => restore_native(
            &snap,
            &peer,
            &data,
            super::native::RestoreStyle::for_version(&etcd_version),
            size,
        )?,
    }
    let auth = sandbox_auth_off(&data.join("member/snap/db"))?;
    let log = tmp.path().join("etcd.log");
    let child = start_sandbox(&etcd, &data, (&client, &peer), &log)?;
    let mut guard = Guard(child);
    let answer = ask(
        opts.runtime,
        &client,
        revision,
        opts.start_timeout,
        &mut guard.0,
        &log,
    );
    drop(guard);
    let (hash, keys) = match answer {
        Ok(x) => x,
        Err(Failure::Backup(e)) => {
            problems.push(e);
            (None, None)
        }
        Err(Failure::Sandbox(e)) => return Err(e),
    };
    if let (Some(want), Some(got)) = (expected, hash) {
        // Either answer etcd gives, before or after the compaction it resumes at start.
        if want != got && while_compacting != Some(got) {
            problems.push(format!(
                "restored etcd answers hashkv {got} at revision {revision}, the backup's is {want}"
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
        etcd_version,
        etcd_path: etcd.display().to_string(),
        backup_etcd_version: m.etcd_version.clone(),
        revision,
        to_revision: opts.replay.map(|c| c.to_revision),
        hashkv_expected: expected,
        hashkv_while_compacting: while_compacting,
        hashkv: hash,
        keys_expected,
        keys,
        problems,
        seconds: (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        auth_enabled: auth.enabled,
        users: auth.users,
        roles: auth.roles,
    })
}

/// What the restored etcd must answer, and the db size the native writer is told.
struct Expected {
    size: u64,
    hashkv: Option<u32>,
    while_compacting: Option<u32>,
    revision: i64,
    keys: u64,
}

/// The backup fetched into `snap` (`fetch`), and what the restored etcd must answer: for
/// the backup alone, the snapshot's own hashkv and keys, read offline with every page
/// checked ([`backup_expects`], which adds its problems to `problems`). A test to a
/// revision expects what the replay predicts instead, from a strict walk of every page of
/// the replayed database (the base's included), so the base is not walked twice (its own
/// hashkv is a test of the backup alone).
fn expectations(
    repo: &crate::catalog::Repository,
    m: &Manifest,
    opts: &TestOptions<'_>,
    snap: &Path,
    fetch: impl FnOnce() -> Result<()> + Send,
    problems: &mut Vec<String>,
) -> Result<Expected> {
    let Some(c) = opts.replay else {
        fetch()?;
        let e = backup_expects(snap, m, problems)?;
        return Ok(Expected {
            size: m.db_size,
            hashkv: e.hashkv,
            while_compacting: e.while_compacting,
            revision: m.revision,
            keys: e.keys,
        });
    };
    let catalog = super::pitr::CatalogRecords {
        repo,
        cluster_id: m.cluster_id.to_string(),
    };
    let src = opts.records.unwrap_or(&catalog);
    // Replayed onto the fetched snapshot itself (a throwaway, checked while fetched); a
    // compacted window is read while it is fetched.
    let ((), img, ahead) = super::pitr::verify_reading_ahead(c, src, || {
        fetch()?;
        Ok((
            (),
            Some(super::replay::FileImage::in_place(snap, m.db_size)?),
        ))
    })?;
    let img = img.ok_or_else(|| Error::Internal("no fetched snapshot".into()))?;
    let (size, p) = super::pitr::test_replay((img, ahead), &repo.object_of(m), c, src)?;
    Ok(Expected {
        size,
        hashkv: Some(p.hashkv),
        while_compacting: p.hashkv_while_compacting,
        revision: c.to_revision,
        keys: p.keys,
    })
}

/// The backup as etcd's snapshot file (database + SHA-256 trailer) in the test's temporary
/// dir, its digest checked against the manifest's while decoded. Not fsynced: nothing
/// outlives the test, and the native writer syncs the db it makes of it.
fn fetch_throwaway(repo: &crate::catalog::Repository, m: &Manifest, snap: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(snap).at(snap)?;
    let (_, digest) = crate::jobs::fetch::decode_into(repo, m, &mut f, snap, &|_| {})?;
    f.write_all(&digest).at(snap)?;
    Ok(())
}

/// What the fetched snapshot says offline (see [`offline_facts`]).
struct OfflineFacts {
    /// hashkv at `at` (None: etcd refuses it), and the answer while etcd compacts.
    hashkv: Option<u32>,
    while_compacting: Option<u32>,
    at: i64,
    keys: u64,
}

/// What etcd restored from the backup alone must answer, read offline from the fetched
/// snapshot (every page checked): its hashkv at the backup's revision (the manifest's, where
/// it records one; a manifest that disagrees with its snapshot is a problem), the answer
/// while etcd compacts, and its live keys.
fn backup_expects(snap: &Path, m: &Manifest, problems: &mut Vec<String>) -> Result<OfflineFacts> {
    let mut facts = offline_facts(snap, m.revision)?;
    if facts.hashkv.is_none() {
        // Refused at the backup's revision (3.4/3.5 refuse its compaction revision): the
        // hash at the snapshot's current revision is that one when they are the same.
        let now = offline_facts(snap, 0)?;
        if now.at == m.revision {
            (facts.hashkv, facts.while_compacting) = (now.hashkv, now.while_compacting);
        }
    }
    facts.hashkv = match (m.hashkv, facts.hashkv) {
        // Older versions recorded the answer etcd gives while it compacts, where no key is
        // live at the backup's revision: that one is the snapshot's too.
        (Some(h), Some(o)) if h != o && Some(h) != facts.while_compacting => {
            problems.push(format!(
                "the manifest records hashkv {h}, the stored snapshot computes to {o}"
            ));
            Some(h)
        }
        (Some(_), Some(o)) => Some(o),
        (Some(h), None) => Some(h),
        (None, o) => o,
    };
    Ok(facts)
}

/// The cluster version the fetched snapshot records (bucket `cluster`), read without
/// walking the rest of it.
fn cluster_version_of(snap: &Path) -> Result<Option<String>> {
    let file = crate::io::FileReader::open(snap).at(snap)?;
    let name = snap.display().to_string();
    let db = crate::format::bolt::Db::open(&file).map_err(|e| e.in_file(&name))?;
    let c = crate::format::etcd::cluster_fields(&db).map_err(|e| e.in_file(&name))?;
    Ok(c.cluster_version)
}

/// hashkv at `rev` (0: the current revision) and the live key count,
/// read offline from the fetched snapshot; with the revision the hash is at.
fn offline_facts(snap: &Path, rev: i64) -> Result<OfflineFacts> {
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
    Ok(OfflineFacts {
        hashkv: ins.report.hashkv,
        while_compacting: ins.report.hashkv_while_compacting,
        at: ins.report.hashkv_revision,
        keys: ins.report.live_keys,
    })
}

/// etcd's `ErrCompacted` answer to a request at a compacted revision.
fn refused_as_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.message().contains("required revision has been compacted"))
}

/// Why the sandbox got no answer: something about the backup (a problem of the report,
/// exit 3), or about the sandbox itself (an error, the backup's health unknown).
enum Failure {
    Backup(String),
    Sandbox(Error),
}

/// Wait for etcd to answer, then ask its hashkv at `rev` and its key count. Only errors
/// that waiting can cure (nothing listening yet, no leader yet) are retried until
/// `timeout`; any other answer ends the wait at once.
fn ask(
    rt: &tokio::runtime::Handle,
    client: &str,
    rev: i64,
    timeout: Duration,
    child: &mut Child,
    log: &Path,
) -> std::result::Result<(Option<u32>, Option<u64>), Failure> {
    let cfg = crate::source::etcd::ConnectConfig {
        endpoints: vec![client.to_string()],
        ..Default::default()
    };
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            if text.contains("address already in use") {
                // Another process took the port: running again can succeed.
                return Err(Failure::Sandbox(Error::Busy(format!(
                    "the sandbox etcd could not listen on {client} (a port taken meanwhile): run restore test again; its log: {last}"
                ))));
            }
            return Err(Failure::Backup(format!(
                "restored etcd exited ({st}) instead of starting: {last}"
            )));
        }
        let r = rt.block_on(async {
            let mut c = cfg.connect_one(client, false).await?;
            let classify = |what, e: &etcd_client::Error| {
                crate::source::etcd::errors::classify(&cfg, client, what, e)
            };
            let h = match c.hash_kv(rev).await {
                Ok(h) => h,
                // etcd 3.4 and early 3.5 (3.5.1; 3.5.16 answers) refuse a hashkv at exactly
                // the compaction revision (a backup taken right after `compact`): nothing
                // writes to the sandbox, so the hash at its current revision is that one
                // when the current revision is `rev`.
                Err(e) if refused_as_compacted(&e) => {
                    let h = c.hash_kv(0).await.map_err(|e| classify("hashkv", &e))?;
                    let at = h.header().map_or(0, |h| h.revision());
                    if at != rev {
                        return Err(Error::Failed(format!(
                            "hashkv at revision {rev} is refused as compacted and the restored etcd is at revision {at}, not {rev}"
                        )));
                    }
                    h
                }
                Err(e) => return Err(classify("hashkv", &e)),
            };
            let opts = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only();
            let g = c
                .get("", Some(opts))
                .await
                .map_err(|e| classify("count keys", &e))?;
            Ok::<_, Error>((h.hash(), g.count()))
        });
        let e = match r {
            Ok((h, n)) => return Ok((Some(h), Some(n.max(0) as u64))),
            Err(e) => e,
        };
        let kind = match &e {
            Error::Etcd { kind, .. } => Some(*kind),
            _ => None,
        };
        match kind {
            Some(k) if k.is_transient() => {}
            // Credentials, permissions, TLS: the sandbox's setup, not the backup.
            Some(EtcdErrorKind::Auth | EtcdErrorKind::Permission | EtcdErrorKind::Tls) => {
                return Err(Failure::Sandbox(Error::Failed(format!(
                    "the sandbox etcd refused the check ({e}); this says nothing about the backup"
                ))))
            }
            _ => {
                return Err(Failure::Backup(format!(
                    "restored etcd answered with an error: {e}"
                )))
            }
        }
        if start.elapsed() > timeout {
            return Err(Failure::Backup(format!(
                "restored etcd did not answer within {timeout:?}: {e}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

mod sandbox;
use sandbox::{free_port, restore_native, restore_with_tool, sandbox_auth_off, start_sandbox};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_minor() {
        assert_eq!(major_minor("3.5.16"), Some((3, 5)));
        assert_eq!(major_minor("v3.4.23"), Some((3, 4)));
        assert_eq!(major_minor("3.5"), Some((3, 5)));
        assert_eq!(major_minor("3.6.0-alpha.0"), Some((3, 6)));
        assert_eq!(major_minor(""), None);
        let etcd = Path::new("/usr/bin/etcd");
        let e =
            check_etcd_version(etcd, "3.4.23", &[("backed up from etcd", "3.5.1")]).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::ExitCode::Usage);
        let msg = e.to_string();
        assert!(
            msg.contains("etcd 3.4.23") && msg.contains("install etcd 3.5"),
            "{msg}"
        );
        assert!(check_etcd_version(etcd, "3.5.1", &[("backed up from etcd", "3.5.16")]).is_ok());
        assert!(check_etcd_version(etcd, "3.5.16", &[("x", "3.4.23"), ("y", "")]).is_ok());
        // The newest of what the backup records counts.
        assert!(check_etcd_version(etcd, "3.4.23", &[("x", "3.4.23"), ("y", "3.5.0")]).is_err());
    }
}
