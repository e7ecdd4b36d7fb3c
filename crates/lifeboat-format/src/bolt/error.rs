//! What goes wrong reading a database, always with where: [`FormatError`] and the
//! [`Problem`]s the checker and the reports collect.

use std::fmt;
use std::io;

use serde::Serialize;

/// An error from reading a database: always says where.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The source could not deliver bytes that should be there.
    #[error("read of {len} bytes at offset {offset} failed: {source}")]
    Io {
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// The bytes are not a valid database.
    #[error("{0}")]
    Corrupt(Problem),
}

impl FormatError {
    pub(crate) fn corrupt(page: Option<u64>, offset: Option<u64>, msg: impl Into<String>) -> Self {
        FormatError::Corrupt(Problem::new(page, offset, msg))
    }
    /// Where the error happened and what, as a [`Problem`].
    pub fn to_problem(&self) -> Problem {
        match self {
            FormatError::Io {
                offset,
                len,
                source,
            } => Problem::new(
                None,
                Some(*offset),
                format!("read of {len} bytes failed: {source}"),
            ),
            FormatError::Corrupt(p) => p.clone(),
        }
    }
}

/// Whether a failed read means the data is damaged (rather than unreadable). A reader
/// under the image that finds damage of its own (a compressed frame that does not decode)
/// says so with `InvalidData`.
pub fn is_damage(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// One thing found wrong with a file: the page (if known), the byte offset in the database
/// image (if known) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub page: Option<u64>,
    pub offset: Option<u64>,
    pub message: String,
}

impl Problem {
    pub fn new(page: Option<u64>, offset: Option<u64>, message: impl Into<String>) -> Self {
        Problem {
            page,
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.page, self.offset) {
            (Some(p), Some(o)) => write!(f, "page {p} (offset {o}): {}", self.message),
            (Some(p), None) => write!(f, "page {p}: {}", self.message),
            (None, Some(o)) => write!(f, "offset {o}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}
