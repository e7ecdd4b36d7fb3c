//! S3 servers for the S3 tests (branch `s3`): s3s-fs on 127.0.0.1 with a free port and a
//! temp dir, killed on drop.
//!
//! s3s-fs comes from `cargo install s3s-fs@0.14.1 --features binary --locked`
//! (scripts/setup.sh); `LIFEBOAT_S3S_FS` names another binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

pub const ACCESS_KEY: &str = "lifeboat-test";
pub const SECRET_KEY: &str = "lifeboat-test-secret";

fn s3s_fs_bin() -> PathBuf {
    let p = std::env::var_os("LIFEBOAT_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
            home.join("bin/s3s-fs")
        });
    assert!(
        p.is_file(),
        "{} not found: run scripts/setup.sh (cargo install s3s-fs@0.14.1 --features binary --locked)",
        p.display()
    );
    p
}

pub struct S3Server {
    child: Child,
    pub port: u16,
    /// The server's storage: one directory per bucket (s3s-fs; unused by moto).
    pub root: TempDir,
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl S3Server {
    /// s3s-fs with the given buckets created.
    pub fn start(buckets: &[&str]) -> S3Server {
        let root = TempDir::new().unwrap();
        super::reaper::remove_at_exit(root.path());
        for b in buckets {
            std::fs::create_dir(root.path().join(b)).unwrap();
        }
        let port = free_port();
        let child = Command::new(s3s_fs_bin())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let s = S3Server { child, port, root };
        wait_listening(port, "s3s-fs");
        s
    }

    /// moto in server mode (`pip install 'moto[server]'`, scripts/setup.sh): the S3 API
    /// parts s3s-fs lacks (multipart upload listing, object lock). Buckets are made with
    /// [`S3Server::boto`].
    pub fn start_moto() -> S3Server {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server not found: run scripts/setup.sh (pip install 'moto[server]')");
        let s = S3Server {
            child,
            port,
            root: TempDir::new().unwrap(),
        };
        wait_listening(port, "moto_server");
        s
    }

    /// Run a Python snippet with `s3`, a boto3 client of this server, defined; returns its
    /// stdout. For setting up and checking what lifeboat cannot (buckets, stray uploads).
    pub fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}')\n{code}\n",
            self.endpoint()
        );
        let o = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        assert!(o.status.success(), "boto3: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run lifeboat with this server's endpoint and credentials, and nothing of the host's
    /// AWS configuration.
    pub fn lifeboat<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.lifeboat_with(args, &[])
    }

    /// Like [`S3Server::lifeboat`], with extra environment variables.
    pub fn lifeboat_with<I, S>(&self, args: I, env: &[(&str, &str)]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command(args, env).output().expect("run lifeboat")
    }

    /// Start lifeboat like [`S3Server::lifeboat_with`] without waiting for it (output
    /// captured).
    pub fn spawn_lifeboat<I, S>(&self, args: I, env: &[(&str, &str)]) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lifeboat")
    }

    /// Start lifeboat like [`S3Server::lifeboat_with`] without waiting for it, its standard
    /// error appended to `log` (a long-running daemon must not fill a pipe nobody reads).
    pub fn spawn_lifeboat_logged<I, S>(
        &self,
        args: I,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log");
        self.command(args, env)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start lifeboat")
    }

    /// Stop the server (SIGSTOP): its port still accepts connections (the kernel's
    /// backlog), but nothing answers, as with a hung server.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Continue the server after [`S3Server::pause`] (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    /// Kill the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start s3s-fs again on the same port and storage after [`S3Server::kill`].
    pub fn restart(&mut self) {
        self.child = Command::new(s3s_fs_bin())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart s3s-fs");
        wait_listening(self.port, "s3s-fs");
    }

    fn command<I, S>(&self, args: I, env: &[(&str, &str)]) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(lifeboat());
        cmd.args(args)
            .env_remove("ETCDCTL_ENDPOINTS")
            .env("LIFEBOAT_S3_ENDPOINT", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let o = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .output()
        .expect("kill");
    assert!(o.status.success(), "kill -{sig} {pid}: {}", stderr(&o));
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // A stopped process cannot die until continued.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 in front of an S3 server: it counts the bytes the server sends
/// back and keeps the heads of the requests sent to it (request line and headers).
pub struct Proxy {
    pub port: u16,
    /// Bytes the server sent back.
    pub down: Arc<AtomicU64>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(server_port: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (down, heads) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (d, h) = (Arc::clone(&down), Arc::clone(&heads));
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let (up_from, up_to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let h = Arc::clone(&h);
                std::thread::spawn(move || pipe(up_from, up_to, |b| heads_in(&h, b)));
                let d = Arc::clone(&d);
                std::thread::spawn(move || {
                    pipe(server, client, |b| {
                        d.fetch_add(b.len() as u64, Ordering::Relaxed);
                    })
                });
            }
        });
        Proxy { port, down, heads }
    }

    /// The endpoint variable that sends lifeboat through the proxy.
    pub fn env(&self) -> (&'static str, String) {
        (
            "LIFEBOAT_S3_ENDPOINT",
            format!("http://127.0.0.1:{}", self.port),
        )
    }

    /// The heads of the requests seen so far, lowercased.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Copy `from` to `to` until either closes, showing each chunk to `seen`.
fn pipe(mut from: TcpStream, mut to: TcpStream, mut seen: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16384];
    while let Ok(k) = from.read(&mut buf) {
        if k == 0 || to.write_all(&buf[..k]).is_err() {
            break;
        }
        seen(&buf[..k]);
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Keep each request head found in a chunk of a client's bytes: an HTTP/1.1 request line
/// starts a chunk or follows a blank line (a body may end a chunk mid-way; heads are what
/// is looked at, and a head split across two chunks is rare enough at these sizes).
fn heads_in(heads: &Mutex<Vec<String>>, chunk: &[u8]) {
    let text = String::from_utf8_lossy(chunk).to_lowercase();
    for part in std::iter::once(text.as_str()).chain(text.split("\r\n\r\n").skip(1)) {
        let first = part.split("\r\n").next().unwrap_or("");
        if first.ends_with(" http/1.1") {
            let head = part.split("\r\n\r\n").next().unwrap_or(part);
            heads.lock().unwrap().push(head.to_string());
        }
    }
}
