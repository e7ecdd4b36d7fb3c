//! `member/snap/*.snap` files (formats §6.1): `snappb.snapshot{crc, data}` where data is a
//! `raftpb.Snapshot` whose metadata names the raft index and term it covers.
//!
//! Snap files are small (the v2 store holds only membership in 3.5), so they are read whole.

pub mod write;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::wal::record::ConfState;
use crate::wire::{bytes, varint, Reader, WireError};

/// Why etcd would refuse a snap file (and rename it to `<name>.broken`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapError {
    /// `snap: empty snapshot`: empty file, crc 0 or no data.
    #[error("snap: empty snapshot")]
    Empty,
    /// The outer message does not unmarshal.
    #[error("snappb does not decode: {0}")]
    Outer(WireError),
    /// `snap: crc mismatch`.
    #[error("snap: crc mismatch (stored {stored:08x}, data hashes to {computed:08x})")]
    Crc { stored: u32, computed: u32 },
    /// The inner `raftpb.Snapshot` does not unmarshal.
    #[error("raftpb.Snapshot does not decode: {0}")]
    Inner(WireError),
    #[error("read error: {0}")]
    Io(String),
}

/// What a good snap file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapMeta {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// Size of the v2 store JSON.
    pub data_len: u64,
}

/// Decode a snap file's bytes as etcd's `snap.Read` does.
pub fn decode(b: &[u8]) -> Result<SnapMeta, SnapError> {
    if b.is_empty() {
        return Err(SnapError::Empty);
    }
    let mut r = Reader::new(b);
    let (mut crc, mut data): (u32, &[u8]) = (0, &[]);
    loop {
        match r.next_field().map_err(SnapError::Outer)? {
            None => break,
            Some((1, v)) => crc = varint(&r, "Crc", v).map_err(SnapError::Outer)? as u32,
            Some((2, v)) => data = bytes(&r, "Data", v).map_err(SnapError::Outer)?,
            Some(_) => {}
        }
    }
    if data.is_empty() || crc == 0 {
        return Err(SnapError::Empty);
    }
    let computed = crc32c::crc32c(data);
    if computed != crc {
        return Err(SnapError::Crc {
            stored: crc,
            computed,
        });
    }
    let mut meta = SnapMeta {
        index: 0,
        term: 0,
        conf_state: ConfState::default(),
        data_len: 0,
    };
    let mut r = Reader::new(data);
    while let Some((f, v)) = r.next_field().map_err(SnapError::Inner)? {
        match f {
            1 => meta.data_len = bytes(&r, "Data", v).map_err(SnapError::Inner)?.len() as u64,
            2 => {
                let m = bytes(&r, "Metadata", v).map_err(SnapError::Inner)?;
                let mut rr = Reader::new(m);
                while let Some((f, v)) = rr.next_field().map_err(SnapError::Inner)? {
                    match f {
                        1 => {
                            let cs = bytes(&rr, "ConfState", v).map_err(SnapError::Inner)?;
                            meta.conf_state = ConfState::decode(cs).map_err(SnapError::Inner)?;
                        }
                        2 => meta.index = varint(&rr, "Index", v).map_err(SnapError::Inner)?,
                        3 => meta.term = varint(&rr, "Term", v).map_err(SnapError::Inner)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// Parse `%016x-%016x.snap` (term-index).
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap")?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// One `*.snap` file and what reading it gave.
#[derive(Debug, Clone, Serialize)]
pub struct SnapFile {
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub size: u64,
    /// (term, index) from the name, when it parses.
    pub name_term: Option<u64>,
    pub name_index: Option<u64>,
    #[serde(skip)]
    pub result: Result<SnapMeta, SnapError>,
}

impl SnapFile {
    /// The name disagrees with the content (etcd does not care; a sign of a copied file).
    pub fn name_mismatch(&self) -> bool {
        match (&self.result, self.name_term, self.name_index) {
            (Ok(m), Some(t), Some(i)) => m.term != t || m.index != i,
            _ => false,
        }
    }
}

/// The snap directory as etcd's snapshotter sees it.
#[derive(Debug, Default)]
pub struct SnapDir {
    /// `*.snap` files, newest first (etcd sorts names descending).
    pub snaps: Vec<SnapFile>,
    /// `member/snap/db` size, if present.
    pub db: Option<PathBuf>,
    /// `<index>.snap.db` files (a v3 db sent by the leader, not yet applied).
    pub snap_dbs: Vec<(u64, String)>,
    /// Anything else (`*.broken`, `db.tmp*`, `tmp*` ...).
    pub other: Vec<String>,
}

/// Read every snap file of a `member/snap` directory. A file that cannot be read (permission,
/// I/O error) fails the whole read with its path.
pub fn read_dir(dir: &Path) -> Result<SnapDir, crate::io::PathError> {
    use crate::io::AtPath;
    let mut out = SnapDir::default();
    let mut names = Vec::new();
    for ent in std::fs::read_dir(dir).at(dir)? {
        names.push(ent.at(dir)?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    names.reverse();
    for name in names {
        let path = dir.join(&name);
        if name == "db" {
            out.db = Some(path);
        } else if let Some(idx) = name
            .strip_suffix(".snap.db")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            out.snap_dbs.push((idx, name));
        } else if name.ends_with(".snap") {
            let (name_term, name_index) = match parse_name(&name) {
                Some((t, i)) => (Some(t), Some(i)),
                None => (None, None),
            };
            // A file that cannot be read says nothing about its contents: an error, not a
            // damaged snapshot (that would send an operator to replace a healthy member).
            let b = std::fs::read(&path).at(&path)?;
            let (size, result) = (b.len() as u64, decode(&b));
            out.snaps.push(SnapFile {
                name,
                path,
                size,
                name_term,
                name_index,
                result,
            });
        } else {
            out.other.push(name);
        }
    }
    Ok(out)
}

/// Encode a snap file (tests).
pub fn encode(index: u64, term: u64, voters: &[u64], store_json: &[u8]) -> Vec<u8> {
    use crate::wal::record::encode as e;
    let mut cs = Vec::new();
    for v in voters {
        e::field_varint(&mut cs, 1, *v);
    }
    e::field_varint(&mut cs, 5, 0);
    let mut md = Vec::new();
    e::field_bytes(&mut md, 1, &cs);
    e::field_varint(&mut md, 2, index);
    e::field_varint(&mut md, 3, term);
    let mut snap = Vec::new();
    e::field_bytes(&mut snap, 1, store_json);
    e::field_bytes(&mut snap, 2, &md);
    let mut out = Vec::new();
    e::field_varint(&mut out, 1, u64::from(crc32c::crc32c(&snap)));
    e::field_bytes(&mut out, 2, &snap);
    out
}

/// The fuzz entry point for `*.snap` files (`fuzz/fuzz_targets/snap.rs`, the property
/// tests): decode arbitrary bytes; must return, never panic.
#[cfg(any(test, feature = "testkit"))]
pub fn exercise(bytes: &[u8]) {
    let _ = decode(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let b = encode(3, 1, &[7], b"{}");
        let m = decode(&b).unwrap();
        assert_eq!(
            (m.index, m.term, m.conf_state.voters.clone()),
            (3, 1, vec![7])
        );
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            decode(&bad),
            Err(SnapError::Crc { .. }) | Err(SnapError::Outer(_))
        ));
        assert_eq!(decode(&[]), Err(SnapError::Empty));
        assert_eq!(
            parse_name("0000000000000001-0000000000000003.snap"),
            Some((1, 3))
        );
    }
}
