//! Encryption as its own pipeline stage: an encrypting destination's writer runs on a
//! thread of its own, fed through a bounded channel, so that the ChaCha20-Poly1305 pass
//! (and the SHA-256 of the ciphertext, and the store's writes behind it) overlap with
//! compression instead of taking turns with it on the pipeline's thread.
//!
//! The stage changes no byte: the writer on the thread gets exactly what was written, in
//! order. Memory stays bounded: at most [`QUEUED`] pieces of at most [`PIECE`] bytes wait.
//! A write that fails on the thread fails the next write (or the commit) with that error;
//! the writer is then aborted, which removes what it wrote (the [`ObjectWriter`] contract).

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::store::ObjectWriter;
use crate::{Error, Result};

/// Largest piece handed to the thread at once.
const PIECE: usize = 1 << 20;
/// Pieces waiting for the thread, at most.
const QUEUED: usize = 4;

/// What the thread gives back: the writer, and the first write that failed.
type Ended = (Box<dyn ObjectWriter>, io::Result<()>);

/// An [`ObjectWriter`] whose writes happen on a thread of its own.
pub(super) struct Staged {
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<Ended>>,
    /// Once the thread has ended: what it gave back (the writer is taken by commit/abort).
    ended: Option<Ended>,
    object: String,
}

impl Staged {
    /// Run `inner`'s writes on a new thread; `object` names it in errors.
    pub(super) fn spawn(inner: Box<dyn ObjectWriter>, object: &str) -> Result<Staged> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUED);
        let worker = std::thread::Builder::new()
            .name("lifeboat-encrypt".into())
            .spawn(move || {
                crate::host::background();
                let mut w = inner;
                for piece in rx {
                    if let Err(e) = w.write_all(&piece) {
                        return (w, Err(e));
                    }
                }
                (w, Ok(()))
            })
            .map_err(|e| {
                Error::Failed(format!(
                    "encrypting {object}: cannot start its thread: {}",
                    crate::error::io_words(&e)
                ))
            })?;
        Ok(Staged {
            tx: Some(tx),
            worker: Some(worker),
            ended: None,
            object: object.to_string(),
        })
    }

    /// Close the channel and wait for the thread: the writer back, and how its writes
    /// went (`None`: the thread panicked, and the writer was dropped with it, which
    /// removed what it wrote).
    fn end(&mut self) -> Option<&mut Ended> {
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            self.ended = worker.join().ok();
        }
        self.ended.as_mut()
    }

    /// Why the thread stopped, as an error for the write that found out.
    fn stopped(&mut self) -> io::Error {
        match self.end() {
            Some((_, Err(e))) => match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            },
            Some((_, Ok(()))) => io::Error::other("the encryption stage already finished"),
            None => io::Error::other("the encryption stage stopped (its thread panicked)"),
        }
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for piece in buf.chunks(PIECE) {
            let sent = match &self.tx {
                Some(tx) => tx.send(piece.to_vec()).is_ok(),
                None => false,
            };
            if !sent {
                return Err(self.stopped());
            }
        }
        Ok(buf.len())
    }

    /// Nothing to do: every byte reaches the writer before [`commit`](ObjectWriter::commit).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for Staged {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.end();
        match self.ended.take() {
            Some((w, Ok(()))) => w.commit(),
            Some((w, Err(e))) => {
                w.abort();
                Err(Error::Failed(format!(
                    "encrypting {}: {}",
                    self.object,
                    crate::error::io_words(&e)
                )))
            }
            None => Err(Error::Internal(format!(
                "encrypting {}: the encryption thread panicked",
                self.object
            ))),
        }
    }

    fn abort(mut self: Box<Self>) {
        self.end();
        if let Some((w, _)) = self.ended.take() {
            w.abort();
        }
    }
}

impl Drop for Staged {
    /// Dropped without commit or abort: the thread ends, and the writer is dropped (which
    /// removes what it wrote).
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a [`Sink`] got, and how it ended.
    type Got = Arc<Mutex<(Vec<u8>, &'static str)>>;

    /// Records what it got; fails after `limit` bytes, like a disk filling up.
    struct Sink {
        got: Got,
        limit: usize,
    }
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut g = self.got.lock().unwrap();
            if g.0.len() + buf.len() > self.limit {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            g.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl ObjectWriter for Sink {
        fn commit(self: Box<Self>) -> Result<()> {
            self.got.lock().unwrap().1 = "committed";
            Ok(())
        }
        fn abort(self: Box<Self>) {
            self.got.lock().unwrap().1 = "aborted";
        }
    }

    fn staged(limit: usize) -> (Box<Staged>, Got) {
        let got = Arc::new(Mutex::new((Vec::new(), "")));
        let sink = Sink {
            got: Arc::clone(&got),
            limit,
        };
        (Box::new(Staged::spawn(Box::new(sink), "obj").unwrap()), got)
    }

    #[test]
    fn every_byte_in_order_then_commit() {
        let (mut w, got) = staged(usize::MAX);
        let data: Vec<u8> = (0..(5 * PIECE + 123)).map(|i| (i % 253) as u8).collect();
        for chunk in data.chunks(PIECE * 2 + 7) {
            w.write_all(chunk).unwrap();
        }
        w.commit().unwrap();
        let g = got.lock().unwrap();
        assert!(g.0 == data);
        assert_eq!(g.1, "committed");
    }

    #[test]
    fn a_failed_write_fails_a_later_write_or_the_commit_and_aborts() {
        // Found by a later write.
        let (mut w, got) = staged(PIECE);
        let mut failed = None;
        for _ in 0..64 {
            if let Err(e) = w.write_all(&[7u8; PIECE / 2 + 1]) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("a write fails once the thread stopped");
        assert!(e.to_string().contains("No space left"), "{e}");
        let e = w.commit().unwrap_err();
        assert!(e.to_string().contains("encrypting obj"), "{e}");
        assert_eq!(got.lock().unwrap().1, "aborted");
        // Found by the commit: the last write was still queued.
        let (mut w, got) = staged(10);
        w.write_all(&[1u8; 11]).unwrap();
        assert!(w.commit().is_err());
        assert_eq!(got.lock().unwrap().1, "aborted");
        // Aborted by the caller.
        let (mut w, got) = staged(usize::MAX);
        w.write_all(b"abc").unwrap();
        w.abort();
        assert_eq!(got.lock().unwrap().1, "aborted");
    }
}
