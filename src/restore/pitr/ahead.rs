//! `restore plan --to-revision R --compact` reads its window while the base backup is
//! verified, instead of after.
//!
//! Both are CPU-bound and neither fills the two cores of a small host on its own: the
//! verify decompresses, digests and copies the backup and checks every page of the copy;
//! the read decompresses, digests and decodes every segment of the window. A compacted
//! replay writes nothing until its window has been read ([`Replaying::holding`]), so the
//! read needs no database: it is fed to a [`Replayer::before_base`] that knows only the
//! backup's revision from its manifest, and the database is attached once the verify has
//! made the copy ([`Replaying::resume`]). The thread that verified then makes the hashkv
//! pre-pass over the copy's revisions ([`prepass_of`]) while the read goes on.
//!
//! Nothing changes in what is checked or in what a plan says: the verify's verdict comes
//! first (a backup that does not verify stops the read and is reported as before), and a
//! read that fails is reported once the backup has verified, as in the sequential order.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{read_window_as, Chosen, Read, RecordSource, Scanned};
use crate::format::etcd::hashkv::PrePass;
use crate::restore::replay::{prepass_of, FileImage, Replayer};
use crate::{Error, Result};

/// A compacted window read before its base was at hand: the replay it was fed to, what
/// the read came to, and the budget it held the changes in.
pub struct ReadAhead {
    pub(super) rp: Replayer,
    pub(super) read: Result<Scanned>,
    pub(super) budget: usize,
}

/// What was done beside the base backup's verify (see the module).
pub struct Ahead {
    /// The hashkv pre-pass over the copy's revisions (None: it failed, and the walk makes
    /// it whole).
    pub(super) prepass: Option<PrePass>,
    /// The window, read.
    pub(super) read: Option<ReadAhead>,
}

/// `verify` (the chosen backup verified as it is copied: the copy, when it verified) on a
/// thread of its own, while this one reads the chosen window ahead, when the replay is
/// compacted; otherwise just `verify`. The verify's error or verdict comes first: one
/// that fails or gives no copy stops the read, and nothing of it is returned.
pub fn verify_reading_ahead<T: Send>(
    chosen: &Chosen,
    src: &dyn RecordSource,
    verify: impl FnOnce() -> Result<(T, Option<FileImage>)> + Send,
) -> Result<(T, Option<FileImage>, Option<Ahead>)> {
    if !chosen.compact {
        let (t, img) = verify()?;
        return Ok((t, img, None));
    }
    let stop = AtomicBool::new(false);
    let upto = chosen.manifest.revision;
    std::thread::scope(|s| {
        let verifying = std::thread::Builder::new()
            .name("lifeboat-verify".into())
            .spawn_scoped(s, || {
                let verified = verify();
                let prepass = match &verified {
                    Ok((_, Some(img))) => prepass_of(img, upto),
                    _ => {
                        stop.store(true, Ordering::Relaxed);
                        None
                    }
                };
                (verified, prepass)
            })
            .map_err(|e| {
                Error::Internal(format!("cannot start a thread to verify the backup: {e}"))
            })?;
        let read = read_ahead(chosen, src, &stop);
        let (verified, prepass) = verifying
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let (t, img) = verified?;
        let ahead = img.is_some().then_some(Ahead { prepass, read });
        Ok((t, img, ahead))
    })
}

/// The chosen (compacted) window read and fed to a held replay that starts at the
/// manifest's revision; None when that replay cannot start (the replay that follows
/// reports why). Stops, its read then an error, once `stop` is set.
fn read_ahead(chosen: &Chosen, src: &dyn RecordSource, stop: &AtomicBool) -> Option<ReadAhead> {
    let window = (chosen.manifest.revision, chosen.to_revision);
    let mut rp = Replayer::before_base(window.0, window.1).ok()?;
    rp.holding(chosen.hold_bytes, true);
    let read = read_window_as(window, Read::Checked, &chosen.backups, src, &mut |r| {
        if stop.load(Ordering::Relaxed) {
            // The backup did not verify: what this read comes to is never looked at.
            return Err(super::stop());
        }
        rp.feed(r)
    });
    Some(ReadAhead {
        rp,
        read,
        budget: chosen.hold_bytes,
    })
}
