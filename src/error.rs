//! The library's error type and the process exit codes of the interface (docs/exit-codes.md).
//!
//! Modules keep their own typed errors where that helps (the format readers report
//! page and offset); everything that crosses into a command is an [`Error`], whose
//! [`Error::exit_code`] decides how the process ends and whose [`Error::locator`] says
//! where the problem is (file, page, endpoint, destination, flag) for `-o json`. The CLI
//! adds context with `anyhow` and finds both by walking the error chain.
//!
//! Store and etcd errors carry a *kind*, so that wrappers (retry, fan-out) and the backup's
//! member fail-over decide from a type, never from a message: only transient kinds are
//! worth another try.

use std::path::PathBuf;

use serde::Serialize;

use crate::format::bolt::{is_damage, FormatError};
use crate::io::PathError;

/// Process exit codes promised in the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The operation failed: network, storage, etcd.
    Failed = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// An integrity problem was found: digest mismatch, corrupt page, corrupt WAL record.
    Integrity = 3,
    /// Unhealthy cluster or member (doctor verdicts).
    Unhealthy = 4,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of store failure this is: decides whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreErrorKind {
    /// The object (or bucket, or directory) does not exist.
    NotFound,
    /// An object of that name exists and is never overwritten.
    AlreadyExists,
    /// Permission or authentication refused: retrying will not help.
    Permission,
    /// Worth retrying: throttling, connection resets, 5xx.
    Transient,
    /// The server does not implement the request (HTTP 501 `NotImplemented`): not retried;
    /// a command that can do without it says so and goes on.
    Unsupported,
    /// The server could not be connected to (refused, or no connection within the connect
    /// deadline): worth retrying; counted as `stage="connect"`.
    Unreachable,
    /// Connected, but no answer (or a stalled transfer) within the deadline: the server may
    /// be hung. Not retried by the store wrapper (the deadline already waited); the next
    /// run tries again.
    Timeout,
    /// Anything else (full disk, bad request, ...): not retried.
    Other,
}

impl StoreErrorKind {
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            StoreErrorKind::Transient | StoreErrorKind::Unreachable
        )
    }
}

/// What kind of etcd failure this is: decides whether the backup moves on to the next
/// member (transient) or fails at once (the rest: they cannot succeed on retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdErrorKind {
    /// TCP connection refused: nothing listens there (etcd not running, wrong port).
    Refused,
    /// No answer in time: dial timeout, or connected but the member does not answer.
    Timeout,
    /// A snapshot stream stopped sending data.
    Stalled,
    /// A stream or request broke mid-way (member killed, leader change, reset).
    Broken,
    /// TLS handshake or certificate verification failed, or TLS/plain-text mismatch.
    Tls,
    /// Authentication failed (wrong user or password, auth not enabled, ...).
    Auth,
    /// The user lacks permission for the request.
    Permission,
    /// etcd answered with an error that another member may not give (no leader, ...).
    Unavailable,
    /// Anything else.
    Other,
}

impl EtcdErrorKind {
    /// Whether trying again (on this or another member, after a back-off) can help.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            EtcdErrorKind::Refused
                | EtcdErrorKind::Timeout
                | EtcdErrorKind::Stalled
                | EtcdErrorKind::Broken
                | EtcdErrorKind::Unavailable
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong flags, unreadable configuration, a destination that cannot be understood.
    #[error("{0}")]
    Usage(String),

    /// A flag (or config key) whose value cannot work: names it for `-o json` (`flag`).
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },

    /// Stored or streamed data is not what it claims to be.
    #[error("integrity problem in {object}: {what}")]
    Integrity { object: String, what: String },

    /// Damage at a known place in a file: page and/or byte offset.
    #[error("{}", corrupt_message(file, *page, *offset, what))]
    Corrupt {
        file: String,
        page: Option<u64>,
        offset: Option<u64>,
        what: String,
    },

    /// A file or directory could not be read or written.
    #[error("{}: {}", path.display(), crate::error::io_words(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The store (local directory, S3) failed.
    #[error("store {location}: {message}")]
    Store {
        location: String,
        kind: StoreErrorKind,
        message: String,
    },

    /// etcd could not be reached or answered with an error.
    #[error("etcd {endpoint}: {message}")]
    Etcd {
        endpoint: String,
        kind: EtcdErrorKind,
        message: String,
    },

    /// A backup or object that was asked for does not exist.
    #[error("{0}")]
    NotFound(String),

    /// lifeboat refused a step that would lose, overwrite or move data it must not touch
    /// (an existing file, a live member's data dir, a retention that would remove every
    /// backup). Nothing was changed; the message says what to do first.
    #[error("{0}")]
    Refused(String),

    /// Another run holds what this one needs (a host lock) past the time it may wait.
    /// Running again later can succeed.
    #[error("{0}")]
    Busy(String),

    /// lifeboat's own fault (a worker thread that panicked, a value it cannot encode):
    /// not the operator's, not the data's. Worth a bug report with the message.
    #[error("{0}")]
    Internal(String),

    /// Anything else that made an operation fail: an outside program or the system, where
    /// no kind above says more and an operator acts on the message, not the class.
    /// What stays here, and why:
    /// - programs lifeboat runs and reports on: `systemctl`, `etcdutl`/`etcdctl snapshot
    ///   restore` (restore/apply.rs), the sandbox etcd refusing its own check
    ///   (restore/selftest.rs);
    /// - the system: no writable directory for the host lock, no free loopback port, a
    ///   signal handler that cannot be set up, the path of
    ///   the running binary, unit files or man pages that cannot be written (their
    ///   messages carry the remedy, which an `Io` error would drop);
    /// - summaries over several causes: a `wal dump` of a dir check-member judges bad
    ///   (exit 1 as documented, the verdict in the message), the tee's failure naming every
    ///   destination and the last of a backup's attempts (jobs/backup), a wrapped error
    ///   that is not a store's in prune;
    /// - the pipeline's encryption and read-back failures (pipeline/encrypt), and the
    ///   snapshot stream's consumer that stopped (its own error is the one reported).
    ///
    /// Not here: lifeboat's own faults (`Internal`), another run or process holding what
    /// this one needs (`Busy`), a store's or etcd's failure (`Store`/`Etcd`, which keep
    /// their kind when prune adds context).
    #[error("{0}")]
    Failed(String),
}

fn corrupt_message(file: &str, page: Option<u64>, offset: Option<u64>, what: &str) -> String {
    let mut s = format!("integrity problem in {file}");
    if let Some(p) = page {
        s.push_str(&format!(", page {p}"));
    }
    if let Some(o) = offset {
        s.push_str(&format!(", offset {o}"));
    }
    s.push_str(": ");
    s.push_str(what);
    s
}

/// An OS error in words, once: "No such file or directory" rather than Rust's
/// "No such file or directory (os error 2)", which the CLI would otherwise repeat.
pub fn io_words(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Where a problem is, for the JSON error document: every field that is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Locator {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Flag { .. } => ExitCode::Usage,
            Error::Integrity { .. } | Error::Corrupt { .. } => ExitCode::Integrity,
            Error::Io { .. }
            | Error::Store { .. }
            | Error::Etcd { .. }
            | Error::NotFound(_)
            | Error::Refused(_)
            | Error::Busy(_)
            | Error::Internal(_)
            | Error::Failed(_) => ExitCode::Failed,
        }
    }

    /// What is known about where the problem is.
    pub fn locator(&self) -> Locator {
        let mut l = Locator::default();
        match self {
            Error::Flag { flag, .. } => l.flag = Some(flag.clone()),
            Error::Integrity { object, .. } => l.file = Some(object.clone()),
            Error::Corrupt {
                file, page, offset, ..
            } => {
                l.file = Some(file.clone());
                l.page = *page;
                l.offset = *offset;
            }
            Error::Io { path, .. } => l.file = Some(path.display().to_string()),
            Error::Store { location, .. } => l.destination = Some(location.clone()),
            Error::Etcd { endpoint, .. } => l.endpoint = Some(endpoint.clone()),
            Error::Usage(_)
            | Error::NotFound(_)
            | Error::Refused(_)
            | Error::Busy(_)
            | Error::Internal(_)
            | Error::Failed(_) => {}
        }
        l
    }

    /// The class of the error in one stable word, for the JSON error document's `kind`
    /// (scripts and alerts tell failures apart by it, not by the message).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Flag { .. } => "flag",
            Error::Integrity { .. } => "integrity",
            Error::Corrupt { .. } => "corrupt",
            Error::Io { .. } => "io",
            Error::Store { .. } => "store",
            Error::Etcd { .. } => "etcd",
            Error::NotFound(_) => "not_found",
            Error::Refused(_) => "refused",
            Error::Busy(_) => "busy",
            Error::Internal(_) => "internal",
            Error::Failed(_) => "failed",
        }
    }

    /// Whether another try (after a back-off) can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store { kind, .. } => kind.is_transient(),
            Error::Etcd { kind, .. } => kind.is_transient(),
            _ => false,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn integrity(object: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Integrity {
            object: object.into(),
            what: what.into(),
        }
    }

    pub fn flag(flag: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Flag {
            flag: flag.into(),
            message: message.into(),
        }
    }

    pub fn store(
        location: impl Into<String>,
        kind: StoreErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Error::Store {
            location: location.into(),
            kind,
            message: message.into(),
        }
    }

    pub fn etcd(
        endpoint: impl Into<String>,
        kind: EtcdErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Error::Etcd {
            endpoint: endpoint.into(),
            kind,
            message: message.into(),
        }
    }
}

/// Extension to attach a path to `std::io::Result`s.
/// A format reader's error as the library's, naming the `file` it came from (an operator
/// reading two files must learn which one is damaged). Damage is an integrity problem: so
/// is a read that failed because the data is shorter than it claims or a compressed frame
/// under it does not decode. Other read failures are the operation failing.
pub trait InFile {
    fn in_file(self, file: &str) -> Error;
}

impl InFile for FormatError {
    fn in_file(self, file: &str) -> Error {
        match self {
            FormatError::Corrupt(p) => Error::Corrupt {
                file: file.to_string(),
                page: p.page,
                offset: p.offset,
                what: p.message,
            },
            FormatError::Io { offset, source, .. } if is_damage(&source) => Error::Corrupt {
                file: file.to_string(),
                page: None,
                offset: Some(offset),
                what: io_words(&source),
            },
            FormatError::Io { source, .. } => Error::Io {
                path: file.into(),
                source,
            },
        }
    }
}

impl From<PathError> for Error {
    fn from(e: PathError) -> Error {
        Error::io(e.path, e.source)
    }
}

pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_say_the_cause_once() {
        let e = Error::io(
            "/ro/x",
            std::io::Error::from_raw_os_error(30), // EROFS
        );
        let s = e.to_string();
        assert_eq!(s.matches("Read-only file system").count(), 1, "{s}");
        assert!(!s.contains("os error"), "{s}");
    }

    #[test]
    fn locators_and_kinds() {
        let e = Error::etcd("10.0.0.1:2379", EtcdErrorKind::Tls, "bad cert");
        assert_eq!(e.locator().endpoint.as_deref(), Some("10.0.0.1:2379"));
        assert!(!e.is_transient());
        assert!(Error::store("s3://b", StoreErrorKind::Transient, "503").is_transient());
        let c = Error::Corrupt {
            file: "a.db".into(),
            page: Some(7),
            offset: Some(28672),
            what: "bad".into(),
        };
        assert_eq!(c.exit_code(), ExitCode::Integrity);
        assert_eq!(
            c.to_string(),
            "integrity problem in a.db, page 7, offset 28672: bad"
        );
    }
}
