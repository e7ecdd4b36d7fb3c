//! What a restored cluster will answer, computed offline before any member is written:
//! its starting revision, its `hashkv` at that revision and its key count.
//!
//! The prediction reads the database exactly as the native writer leaves it: the
//! writer's copy-on-write transaction (the new membership, and with a bump the bumped
//! revision and the compaction mark, see [`super::native`]) is laid over the snapshot in
//! memory, and the offline hashkv of [`crate::format::etcd::hashkv`] runs on the result.
//! etcd compacts to the marked revision when it starts; hashkv leaves out exactly what the
//! compaction removes, so the hash is the same before and after it, except when no key is
//! live at the revision: etcd then hashes every entry still stored, and the prediction
//! names both answers (`format::etcd::hashkv::Answers`).

use crate::format::bolt::write::Patch;
use crate::format::bolt::Db;
use crate::format::bolt::EntryVisitor;
use crate::format::etcd::hashkv::PrePass;
use crate::format::etcd::report::{report, report_visiting_prepared, ReportOptions};
use crate::io::ReadAt;
use crate::{Error, Result};

/// The restored cluster's starting state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prediction {
    /// The revision every member reports after the restore (with a bump: the bumped one).
    pub revision: i64,
    /// `hashkv` at that revision (what `etcdctl endpoint hashkv` prints with no --rev),
    /// once etcd has finished the compaction it resumes when it loads the database.
    pub hashkv: u32,
    /// What it answers until then, when that differs (no key is live at the revision).
    pub hashkv_while_compacting: Option<u32>,
    /// Live keys (what a count-only range over the whole keyspace answers).
    pub keys: u64,
}

/// A database image with a patch laid over it: reads see the patched bytes.
pub(crate) struct Patched<'a, R: ReadAt + ?Sized> {
    base: &'a R,
    patch: &'a Patch,
    size: u64,
}

impl<R: ReadAt + ?Sized> ReadAt for Patched<'_, R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.size)
            .ok_or_else(|| crate::io::eof(offset, buf.len(), self.size))?;
        let base_size = self.base.size();
        // The base's part, then zeros beyond it (pages the patch adds).
        let from_base = base_size.saturating_sub(offset).min(buf.len() as u64) as usize;
        if from_base > 0 {
            self.base.read_exact_at(offset, &mut buf[..from_base])?;
        }
        buf[from_base..].fill(0);
        for (at, bytes) in [&self.patch.pages, &self.patch.meta] {
            let p_end = at.saturating_add(bytes.len() as u64);
            let lo = offset.max(*at);
            let hi = end.min(p_end);
            if lo >= hi {
                continue;
            }
            let (dst, src) = ((lo - offset) as usize, (lo - at) as usize);
            let n = (hi - lo) as usize;
            buf[dst..dst + n].copy_from_slice(&bytes[src..src + n]);
        }
        Ok(())
    }
}

/// Predict the restored cluster from the snapshot's database image `db` (without the
/// SHA-256 trailer) and the restore the plan describes. `object` names the source in
/// errors.
pub fn predict(
    db: &dyn ReadAt,
    spec: &super::native::RestoreSpec,
    object: &str,
) -> Result<Prediction> {
    predict_walk(db, spec, object, None, None)
}

/// [`predict`], with `extra` shown every entry of the restored image on the same walk; the
/// walk must then be clean (a problem is an integrity error naming `object`), since what
/// `extra` computes from it is trusted. `prepass`: the start of the hashkv's pre-pass,
/// made ahead of time on a database with the same entries up to its revision (see
/// [`crate::format::etcd::hashkv::PrePass`]; not used where it does not fit).
pub fn predict_visiting(
    db: &dyn ReadAt,
    spec: &super::native::RestoreSpec,
    object: &str,
    extra: &mut dyn EntryVisitor,
    prepass: Option<PrePass>,
) -> Result<Prediction> {
    predict_walk(db, spec, object, Some(extra), prepass)
}

fn predict_walk(
    db: &dyn ReadAt,
    spec: &super::native::RestoreSpec,
    object: &str,
    extra: Option<&mut dyn EntryVisitor>,
    prepass: Option<PrePass>,
) -> Result<Prediction> {
    let patch = super::native::restore_patch(db, spec)?;
    let image = Patched {
        base: db,
        patch: &patch,
        size: patch.len_after(db.size()),
    };
    let bolt = Db::open(&image).map_err(|e| Error::integrity(object, e.to_string()))?;
    let opts = ReportOptions {
        hashkv_rev: 0,
        k8s: false,
        by_namespace: false,
        top: 0,
        max_problems: 10,
    };
    let r = match extra {
        None => report(&bolt, &opts),
        Some(extra) => {
            let r = report_visiting_prepared(&bolt, &opts, extra, prepass);
            if let Some(p) = r.problems.first() {
                return Err(Error::integrity(
                    object,
                    format!("the restored database fails the check: {p}"),
                ));
            }
            r
        }
    };
    let answers = r.hashkv_answers.ok_or_else(|| {
        Error::integrity(
            object,
            format!(
                "cannot compute the restored cluster's hashkv: {}",
                r.hashkv_error.as_deref().unwrap_or("unknown reason")
            ),
        )
    })?;
    let revision = r
        .summary
        .revision
        .max(r.summary.compact_revision.unwrap_or(0));
    // The bump's entry (the empty key at the bumped revision, the last entry of bucket
    // `key`) is indexed by etcd like a put when it loads the db, so its keep set holds it
    // and hashkv hashes it (measured on 3.4.23, 3.5.1 and 3.5.16: tests/it/restore_check.rs);
    // the offline hashkv leaves empty keys out. Its value is empty: only the key counts.
    // With it `keep` is never empty, even when no user key is live: one answer.
    let (hashkv, hashkv_while_compacting) = if spec.bump_revision.unwrap_or(0) > 0 {
        let mut k = revision.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0i64.to_be_bytes());
        (crc32c::crc32c_append(answers.with_live_key, &k), None)
    } else {
        (answers.best(), answers.while_compacting())
    };
    Ok(Prediction {
        // etcd starts at the compaction revision when the compaction removed newer keys.
        revision,
        hashkv,
        hashkv_while_compacting,
        keys: r.live_keys,
    })
}

/// The restore a plan describes, as the native writer takes it.
pub fn spec_of(plan: &super::plan::Plan) -> super::native::RestoreSpec {
    super::native::RestoreSpec {
        members: plan
            .members
            .iter()
            .map(|m| super::native::MemberSpec {
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
            })
            .collect(),
        token: plan.cluster_token.clone(),
        bump_revision: plan.bump_revision,
        mark_compacted: plan.mark_compacted,
    }
}

/// The first `size` bytes of an image (a snapshot without its SHA-256 trailer).
struct Prefix<'a> {
    inner: &'a dyn ReadAt,
    size: u64,
}

impl ReadAt for Prefix<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.size {
            return Err(crate::io::eof(offset, buf.len(), self.size));
        }
        self.inner.read_exact_at(offset, buf)
    }
}

/// The database image of a snapshot: without etcd's 32-byte SHA-256 trailer when it has
/// one (a database is a whole number of pages, a multiple of 512 bytes; a snapshot file
/// adds the trailer, a backup object's reader may not).
pub(crate) fn database_of(snapshot: &dyn ReadAt) -> impl ReadAt + '_ {
    let trailer = crate::pipeline::trailer::TRAILER_LEN as u64;
    let size = snapshot.size();
    Prefix {
        inner: snapshot,
        size: if size % 512 == trailer && size >= trailer {
            size - trailer
        } else {
            size
        },
    }
}

/// Fill `plan`'s `expected_revision`, `expected_hashkv` and `expected_keys` from the
/// snapshot it restores: a backup's snapshot (with or without etcd's SHA-256 trailer) or,
/// when the plan restores a member's db, that db.
pub fn predict_plan(
    plan: &mut super::plan::Plan,
    snapshot: &dyn ReadAt,
    object: &str,
) -> Result<()> {
    let db = database_of(snapshot);
    let p = predict(&db, &spec_of(plan), object)?;
    plan.expected_revision = Some(p.revision);
    plan.expected_hashkv = Some(p.hashkv);
    plan.expected_hashkv_while_compacting = p.hashkv_while_compacting;
    plan.expected_keys = Some(p.keys);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_patched_bytes() {
        let base = vec![1u8; 8];
        let patch = Patch {
            pages: (8, vec![2u8; 4]),
            meta: (2, vec![3u8; 2]),
            high_water_mark: 3,
            page_size: 4,
            txid: 1,
        };
        let img = Patched {
            base: &base,
            patch: &patch,
            size: patch.len_after(8),
        };
        let mut buf = vec![0u8; 12];
        img.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(buf, [1, 1, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2]);
        let mut tail = vec![0u8; 3];
        img.read_exact_at(7, &mut tail).unwrap();
        assert_eq!(tail, [1, 2, 2]);
        assert!(img.read_exact_at(10, &mut tail).is_err());
    }
}
