//! Test clusters: members started on free loopback ports in their own temp dirs, stopped
//! (and their processes reaped) when the cluster is dropped.

use super::*;

/// Options for the members of a test cluster.
#[derive(Default, Clone)]
pub struct Opts<'a> {
    /// Serve clients over TLS and require client certificates.
    pub tls: Option<&'a Tls>,
    /// `--snapshot-count` (small values make raft snapshots and WAL segments appear sooner).
    pub snapshot_count: Option<u64>,
    /// `--quota-backend-bytes`.
    pub quota_backend_bytes: Option<u64>,
    /// Anything else for the etcd command line.
    pub extra_args: Vec<String>,
    /// Restore every member's data dir from this snapshot file with etcd 3.5's
    /// `etcdutl snapshot restore` (no `--skip-hash-check`) before starting it.
    pub restore_from: Option<PathBuf>,
    /// Pass `--skip-hash-check` to that restore (a raw `member/snap/db` copy has no hash).
    pub restore_skip_hash_check: bool,
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub(super) child: Option<Child>,
    pub(super) args: Vec<String>,
    /// The server binary it (re)starts with: a rolling upgrade sets another release's.
    pub etcd: PathBuf,
}

impl Member {
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }
    /// The etcd process's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// The tail of this member's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A running cluster of real etcd processes; every process is killed on drop.
pub struct Cluster {
    pub bins: Bins,
    pub dir: TempDir,
    pub members: Vec<Member>,
    pub token: String,
    pub(super) tls: Option<TlsPaths>,
}

#[derive(Clone)]
pub(super) struct TlsPaths {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Cluster {
    /// Start `n` members (names m0, m1, ...) and wait until the cluster serves requests.
    pub fn start(bins: &Bins, n: usize, opts: Opts<'_>) -> Cluster {
        let dir = TempDir::new().unwrap();
        reaper::remove_at_exit(dir.path());
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let token = format!("lifeboat-test-{}", std::process::id());
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (cport, pport)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let client_url = format!("{scheme}://127.0.0.1:{cport}");
            let peer_url = format!("http://127.0.0.1:{pport}");
            let data_dir = dir.path().join(&name);
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_string(),
                "--logger=zap".to_string(),
                "--log-level=warn".to_string(),
            ];
            if let Some(t) = opts.tls {
                args.push(format!("--cert-file={}", t.server_cert.display()));
                args.push(format!("--key-file={}", t.server_key.display()));
                args.push(format!("--trusted-ca-file={}", t.ca.display()));
                args.push("--client-cert-auth".to_string());
            }
            if let Some(c) = opts.snapshot_count {
                args.push(format!("--snapshot-count={c}"));
            }
            if let Some(q) = opts.quota_backend_bytes {
                args.push(format!("--quota-backend-bytes={q}"));
            }
            args.extend(opts.extra_args.iter().cloned());
            members.push(Member {
                log: dir.path().join(format!("{name}.log")),
                name,
                client_url,
                peer_url,
                data_dir,
                child: None,
                args,
                etcd: bins.etcd.clone(),
            });
        }
        let mut c = Cluster {
            bins: bins.clone(),
            dir,
            members,
            token,
            tls: opts.tls.map(|t| TlsPaths {
                ca: t.ca.clone(),
                cert: t.client_cert.clone(),
                key: t.client_key.clone(),
            }),
        };
        if let Some(snap) = &opts.restore_from {
            let etcdutl = etcd35().etcdutl.expect("etcdutl");
            for m in &c.members {
                let o = Command::new(&etcdutl)
                    .env_clear()
                    .args(["snapshot", "restore"])
                    .arg(snap)
                    .arg(format!("--name={}", m.name))
                    .arg(format!("--initial-cluster={initial}"))
                    .arg(format!("--initial-cluster-token={}", c.token))
                    .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
                    .arg(format!("--data-dir={}", m.data_dir.display()))
                    .args(opts.restore_skip_hash_check.then_some("--skip-hash-check"))
                    .output()
                    .expect("run etcdutl");
                assert!(
                    o.status.success(),
                    "etcdutl snapshot restore {} failed: {}",
                    snap.display(),
                    stderr(&o)
                );
            }
        }
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_healthy(Duration::from_secs(60));
        c
    }

    /// A single member, the common case.
    pub fn single(bins: &Bins, opts: Opts<'_>) -> Cluster {
        Cluster::start(bins, 1, opts)
    }

    pub(super) fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = Command::new(&m.etcd)
            .args(&m.args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", m.etcd.display()));
        m.child = Some(child);
    }

    /// Comma-separated client URLs of all members.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// lifeboat's connection flags for this cluster (endpoints and TLS files).
    pub fn conn_args(&self) -> Vec<String> {
        let mut v = vec![format!("--endpoints={}", self.endpoints())];
        if let Some(t) = &self.tls {
            v.push(format!("--cacert={}", t.ca.display()));
            v.push(format!("--cert={}", t.cert.display()));
            v.push(format!("--key={}", t.key.display()));
        }
        v
    }

    /// Run etcdctl (v3 API) against the given endpoints of this cluster.
    pub fn ctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bins.etcdctl);
        cmd.env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--dial-timeout=3s")
            .arg("--command-timeout=30s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.cert.display()))
                .arg(format!("--key={}", t.key.display()));
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl")
    }

    /// Run etcdctl against every running member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_at(&self.endpoints(), args)
    }

    /// Run etcdctl and require success; returns stdout.
    #[track_caller]
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "etcdctl {args:?} failed: {}{}",
            stderr(&o),
            stdout(&o)
        );
        stdout(&o)
    }

    #[track_caller]
    pub fn put(&self, key: &str, value: &str) {
        self.ctl_ok(&["put", key, value]);
    }

    /// Write `count` keys `{prefix}{i:08}` with `value_size`-byte values through etcdctl's
    /// `txn` in batches (one process per batch, so thousands of keys take a second).
    pub fn fill(&self, prefix: &str, count: usize, value_size: usize) {
        self.fill_batched(prefix, count, value_size, 100);
    }

    /// [`Cluster::fill`] with `batch` puts per txn (etcd refuses more than
    /// `--max-txn-ops`, 128 by default: raise it with `Opts::extra_args` for big batches).
    pub fn fill_batched(&self, prefix: &str, count: usize, value_size: usize, batch: usize) {
        let value: String = "v".repeat(value_size);
        self.fill_values(prefix, count, batch, |_| value.clone());
    }

    /// Like [`Cluster::fill`], with pseudo-random hex values that zstd cannot shrink much.
    pub fn fill_random(&self, prefix: &str, count: usize, value_size: usize) {
        self.fill_values(prefix, count, 100, |i| {
            let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..value_size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b"0123456789abcdef"[(x & 15) as usize])
                })
                .collect()
        });
    }

    /// Put `value_size`-byte values under `/fill/N` until etcd refuses with "database space
    /// exceeded" (the NOSPACE alarm); panics if the quota is never reached.
    #[track_caller]
    pub fn fill_until_nospace(&self, value_size: usize) {
        let value = "n".repeat(value_size);
        for i in 0..200 {
            let o = self.ctl(&["put", &format!("/fill/{i}"), &value]);
            if !o.status.success() {
                assert!(stderr(&o).contains("space exceeded"), "{}", stderr(&o));
                return;
            }
        }
        panic!("NOSPACE never raised: is --quota-backend-bytes set?");
    }

    /// Write `count` keys `{prefix}{i:08}` with `value(i)`, `batch` puts per etcdctl txn.
    pub fn fill_values(
        &self,
        prefix: &str,
        count: usize,
        batch: usize,
        value: impl Fn(usize) -> String,
    ) {
        let mut start = 0;
        while start < count {
            let end = (start + batch.max(1)).min(count);
            let mut script = String::from("\n");
            for i in start..end {
                script.push_str(&format!("put {prefix}{i:08} {}\n", value(i)));
            }
            script.push_str("\n\n");
            let mut cmd = Command::new(&self.bins.etcdctl);
            cmd.env_clear()
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.endpoints()))
                .arg("--command-timeout=60s");
            if let Some(t) = &self.tls {
                cmd.arg(format!("--cacert={}", t.ca.display()))
                    .arg(format!("--cert={}", t.cert.display()))
                    .arg(format!("--key={}", t.key.display()));
            }
            let mut child = cmd
                .arg("txn")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(script.as_bytes()).unwrap();
            }
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "etcdctl txn failed: {}", stderr(&o));
            start = end;
        }
    }

    /// `etcdctl endpoint status -w json` for one member, parsed.
    pub fn status_of(&self, i: usize) -> Option<serde_json::Value> {
        self.status_as(i, &[])
    }

    /// [`Cluster::status_of`] with more etcdctl flags (`--user=…` once auth is on: etcd
    /// 3.6+ wants credentials for `endpoint status`).
    pub fn status_as(&self, i: usize, extra: &[&str]) -> Option<serde_json::Value> {
        let mut args = extra.to_vec();
        args.extend(["endpoint", "status", "-w", "json"]);
        let o = self.ctl_at(&self.members[i].client_url, &args);
        if !o.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        v.as_array()?.first().cloned()
    }

    /// Index of the current leader among running members.
    pub fn leader(&self) -> Option<usize> {
        self.leader_as(&[])
    }

    /// [`Cluster::leader`], asking with more etcdctl flags ([`Cluster::status_as`]).
    pub fn leader_as(&self, extra: &[&str]) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            if let Some(s) = self.status_as(i, extra) {
                let st = &s["Status"];
                let me = st["header"]["member_id"].as_u64();
                if me.is_some() && me == st["leader"].as_u64() {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Wait until every running member answers and a leader exists.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let running: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.members[i].child.is_some())
                .collect();
            for &i in &running {
                if !self.members[i].is_running() {
                    panic!(
                        "etcd {} exited during start-up:\n{}",
                        self.members[i].name,
                        self.members[i].log_tail()
                    );
                }
            }
            let all_ok = running.iter().all(|&i| {
                self.ctl_at(&self.members[i].client_url, &["endpoint", "health"])
                    .status
                    .success()
            });
            if all_ok && self.leader().is_some() {
                return;
            }
            if start.elapsed() > timeout {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- {}\n{}", m.name, m.log_tail()))
                    .collect();
                panic!("cluster not healthy after {timeout:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL one member (a power cut, as far as etcd can tell).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM one member and wait for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            terminate(&mut c, Duration::from_secs(20));
        }
    }

    /// Start a stopped member again with the same flags.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// Start a stopped member again with `--initial-cluster-state=existing` (a member that
    /// was removed and re-added with an empty data dir joins the running cluster this way).
    pub fn restart_existing(&mut self, i: usize) {
        for a in self.members[i].args.iter_mut() {
            if a == "--initial-cluster-state=new" {
                *a = "--initial-cluster-state=existing".to_string();
            }
        }
        self.restart(i);
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }
}

/// SIGTERM a process and give it `grace` to exit before SIGKILL; reaps it either way.
pub(super) fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
