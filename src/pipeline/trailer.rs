//! Splits etcd's snapshot stream into the database and its 32-byte SHA-256 trailer.
//!
//! `Maintenance.Snapshot` sends the database (`meta.pgid * pageSize` bytes) and then one
//! last message holding the SHA-256 of everything sent before it. Message boundaries are
//! not promised (3.6 adds an empty header message), so the split is done on bytes: the
//! last 32 bytes seen are held back until the stream ends, and everything before them is
//! database.

use sha2::{Digest, Sha256};

pub const TRAILER_LEN: usize = 32;

/// Feeds database bytes onwards and keeps the trailing 32 bytes back.
#[derive(Default)]
pub struct TrailerSplitter {
    held: Vec<u8>,
    hasher: Sha256,
    db_len: u64,
}

/// How the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub db_len: u64,
    pub db_sha256: [u8; 32],
    /// The 32 bytes etcd sent last, if the stream was at least that long.
    pub trailer: Option<[u8; 32]>,
}

impl Split {
    pub fn trailer_matches(&self) -> bool {
        self.trailer == Some(self.db_sha256)
    }
}

impl TrailerSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept `chunk`; call `emit` with the bytes now known to be database bytes.
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if chunk.len() >= TRAILER_LEN {
            let (body, tail) = chunk.split_at(chunk.len() - TRAILER_LEN);
            if !self.held.is_empty() {
                let held = std::mem::take(&mut self.held);
                self.emit_db(&held, &mut emit)?;
            }
            self.emit_db(body, &mut emit)?;
            self.held.extend_from_slice(tail);
        } else {
            self.held.extend_from_slice(chunk);
            if self.held.len() > TRAILER_LEN {
                let excess = self.held.len() - TRAILER_LEN;
                let front: Vec<u8> = self.held.drain(..excess).collect();
                self.emit_db(&front, &mut emit)?;
            }
        }
        Ok(())
    }

    fn emit_db<E>(
        &mut self,
        bytes: &[u8],
        emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.hasher.update(bytes);
        self.db_len += bytes.len() as u64;
        emit(bytes)
    }

    /// Bytes of database emitted so far.
    pub fn db_len(&self) -> u64 {
        self.db_len
    }

    pub fn finish(self) -> Split {
        let trailer = <[u8; 32]>::try_from(self.held.as_slice()).ok();
        Split {
            db_len: self.db_len,
            db_sha256: self.hasher.finalize().into(),
            trailer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Split) {
        let mut s = TrailerSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.push::<()>(c, |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        }
        (out, s.finish())
    }

    #[test]
    fn splits_db_and_trailer() {
        let db = vec![7u8; 4096];
        let sha: [u8; 32] = Sha256::digest(&db).into();
        let (out, split) = run(&[&db, &sha]);
        assert_eq!(out, db);
        assert!(split.trailer_matches());
        assert_eq!(split.db_len, 4096);
    }

    #[test]
    fn short_stream_has_no_trailer() {
        let (out, split) = run(&[b"abc"]);
        assert!(out.is_empty());
        assert_eq!(split.trailer, None);
        assert!(!split.trailer_matches());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_split(data in proptest::collection::vec(any::<u8>(), 0..3000),
                                             cuts in proptest::collection::vec(0usize..3000, 0..20)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort();
            let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
            let (out, split) = run(&chunks);
            let n = data.len().saturating_sub(32);
            prop_assert_eq!(&out[..], &data[..n]);
            prop_assert_eq!(split.trailer.is_some(), data.len() >= 32);
        }
    }
}
