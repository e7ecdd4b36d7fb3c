//! Fan-out: one byte stream written into an object in each of several stores.
//!
//! A destination whose writer fails is dropped (its partial object aborted) while the
//! others go on, so one full disk does not cost the backup everywhere; only when every
//! destination has failed does writing fail, naming each one and why.

use std::io::{self, Write};

use super::ObjectWriter;

/// One destination's writer, and why it was dropped if it was.
pub struct TeeOutput {
    /// The caller's index for this destination.
    pub index: usize,
    /// Where it goes, for messages (the destination as the user named it).
    pub label: String,
    /// `None` once it failed (or after [`Tee::abort`]).
    pub writer: Option<Box<dyn ObjectWriter>>,
    pub error: Option<String>,
}

/// Writes the same bytes to every live output.
pub struct Tee {
    outs: Vec<TeeOutput>,
}

impl Tee {
    /// `(index, label, writer)` per destination.
    pub fn new(writers: Vec<(usize, String, Box<dyn ObjectWriter>)>) -> Tee {
        Tee {
            outs: writers
                .into_iter()
                .map(|(index, label, w)| TeeOutput {
                    index,
                    label,
                    writer: Some(w),
                    error: None,
                })
                .collect(),
        }
    }

    /// Abort every output that is still live.
    pub fn abort(self) {
        for o in self.outs {
            if let Some(w) = o.writer {
                w.abort();
            }
        }
    }

    /// The outputs, live or failed, for the caller to commit or report.
    pub fn into_outputs(self) -> Vec<TeeOutput> {
        self.outs
    }

    /// Why every output failed, naming each: `every destination failed: /a: ...; /b: ...`.
    fn all_failed(&self) -> String {
        let why: Vec<String> = self
            .outs
            .iter()
            .map(|o| format!("{}: {}", o.label, o.error.as_deref().unwrap_or("aborted")))
            .collect();
        format!("every destination failed: {}", why.join("; "))
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for o in &mut self.outs {
            if let Some(w) = &mut o.writer {
                if let Err(e) = w.write_all(buf) {
                    o.error = Some(crate::error::io_words(&e));
                    if let Some(w) = o.writer.take() {
                        w.abort();
                    }
                }
            }
        }
        if self.outs.iter().all(|o| o.writer.is_none()) {
            return Err(io::Error::other(self.all_failed()));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalStore;
    use crate::store::Store;

    /// A writer that fails after `limit` bytes, like a disk filling up.
    struct Full {
        limit: usize,
        got: usize,
    }
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got + buf.len() > self.limit {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.got += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl ObjectWriter for Full {
        fn commit(self: Box<Self>) -> crate::Result<()> {
            Ok(())
        }
        fn abort(self: Box<Self>) {}
    }

    #[test]
    fn a_failing_output_is_dropped_and_the_others_go_on() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        let mut tee = Tee::new(vec![
            (0, "/full".into(), Box::new(Full { limit: 4, got: 0 })),
            (1, "good".into(), s.create("obj").unwrap()),
        ]);
        tee.write_all(b"0123456789").unwrap();
        let outs = tee.into_outputs();
        assert!(outs[0].writer.is_none());
        assert!(outs[0].error.as_deref().unwrap().contains("No space left"));
        for o in outs {
            if let Some(w) = o.writer {
                w.commit().unwrap();
            }
        }
        assert_eq!(s.get_bytes("obj").unwrap(), b"0123456789");
    }

    #[test]
    fn when_every_output_fails_the_error_names_each() {
        let mut tee = Tee::new(vec![
            (0, "/a".into(), Box::new(Full { limit: 0, got: 0 })),
            (1, "/b".into(), Box::new(Full { limit: 0, got: 0 })),
        ]);
        let e = tee.write_all(b"x").unwrap_err().to_string();
        assert!(e.starts_with("every destination failed: /a: "), "{e}");
        assert!(e.contains("; /b: No space left on device"), "{e}");
    }
}
