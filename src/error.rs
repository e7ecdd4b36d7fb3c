//! The library's error type and the process exit codes of `interface.md`.
//!
//! Modules keep their own typed errors where that helps (the format readers report
//! page and offset); everything that crosses into a command is an [`Error`], whose
//! [`Error::exit_code`] decides how the process ends. The CLI adds context with
//! `anyhow` and finds the exit code by walking the error chain.

use std::path::PathBuf;

/// Process exit codes promised in `interface.md`.
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong flags, unreadable configuration, a destination that cannot be understood.
    #[error("{0}")]
    Usage(String),

    /// Stored or streamed data is not what it claims to be.
    #[error("integrity problem in {object}: {what}")]
    Integrity { object: String, what: String },

    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The store (local directory, S3) failed.
    #[error("store {location}: {message}")]
    Store { location: String, message: String },

    /// etcd could not be reached or answered with an error.
    #[error("etcd {endpoint}: {message}")]
    Etcd { endpoint: String, message: String },

    /// A backup or object that was asked for does not exist.
    #[error("{0}")]
    NotFound(String),

    /// Anything else that made an operation fail.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Integrity { .. } => ExitCode::Integrity,
            Error::Io { .. }
            | Error::Store { .. }
            | Error::Etcd { .. }
            | Error::NotFound(_)
            | Error::Failed(_) => ExitCode::Failed,
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
}

/// Extension to attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
