//! WAL segment files: their `%016x-%016x.wal` names and a directory's listing, as etcd's
//! `readWALNames` sees it (formats §5.1). Files are opened here, never read: reading is the
//! decoder's ([`super::decode`]).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::io::{FileReader, ReadAt};

/// One `seq-index.wal` file.
pub struct Segment {
    pub seq: u64,
    /// Raft index expected for the segment's first entry (from the name).
    pub index: u64,
    pub name: String,
    pub path: Option<PathBuf>,
    pub src: Box<dyn ReadAt>,
}

impl Segment {
    pub fn size(&self) -> u64 {
        self.src.size()
    }
    /// A segment held in memory (tests, fuzzing).
    pub fn from_bytes(seq: u64, index: u64, bytes: Vec<u8>) -> Segment {
        Segment {
            seq,
            index,
            name: segment_name(seq, index),
            path: None,
            src: Box::new(bytes),
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", self.name, self.size())
    }
}

pub fn segment_name(seq: u64, index: u64) -> String {
    format!("{seq:016x}-{index:016x}.wal")
}

/// Parse `%016x-%016x.wal` (what etcd's `parseWALName` accepts, lower- or upper-case hex).
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    let seq = u64::from_str_radix(a, 16).ok()?;
    let index = u64::from_str_radix(b, 16).ok()?;
    if !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some((seq, index))
}

/// The directory listing as etcd's `readWALNames` sees it.
pub struct Listing {
    /// Valid segment files in name order.
    pub segments: Vec<Segment>,
    /// Other files: `*.tmp` (etcd ignores silently) and the rest (etcd warns).
    pub ignored: Vec<String>,
}

/// List a WAL directory. Files are opened but not read.
pub fn list_dir(dir: &Path) -> Result<Listing, crate::io::PathError> {
    use crate::io::AtPath;
    let mut names = Vec::new();
    for ent in std::fs::read_dir(dir).at(dir)? {
        let ent = ent.at(dir)?;
        names.push(ent.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut segments = Vec::new();
    let mut ignored = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match parse_segment_name(&name) {
            Some((seq, index)) if path.is_file() => {
                let src = FileReader::open(&path).at(&path)?;
                segments.push(Segment {
                    seq,
                    index,
                    name,
                    path: Some(path),
                    src: Box::new(src),
                });
            }
            _ => ignored.push(name),
        }
    }
    Ok(Listing { segments, ignored })
}
