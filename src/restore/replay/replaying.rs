//! Replays onto an [`Image`] in transactions of bounded size ([`Replaying`]), with their
//! proof; the in-memory helpers tests and fuzzing use.

use super::compact::{Concluded, Survey, WindowProof};
use super::proof::Proof;
use super::{Image, Replay, Replayer};
use crate::error::InFile;
use crate::format::bolt::write::log::EditLog;
use crate::format::bolt::write::{cow_patch, Edit};
use crate::format::bolt::Db;
use crate::format::capture::Record;
use crate::io::ReadAt;
use crate::{Error, Result};

/// A replay with its proof: what it wrote, the offline `hashkv` of the replayed data at
/// `to_revision`, and the live hashes it was checked against.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// What was replayed (its edits are committed: empty).
    pub replay: Replay,
    /// `hashkv` at `to_revision` (None when etcd would refuse it: `to_revision` is the
    /// compaction revision on a 3.5 db): the answer once etcd has finished the compaction
    /// scheduled in the replayed database.
    pub hashkv: Option<u32>,
    /// What etcd answers at `to_revision` while it has not, when that differs (no key is
    /// live there: see `format::etcd::hashkv::Answers`).
    pub hashkv_while_compacting: Option<u32>,
    /// Revisions of the live hashes that matched.
    pub checked: Vec<i64>,
    /// Transactions committed to the image.
    pub commits: u32,
    /// Every transaction committed, when they were kept ([`Replaying::keep_edits`]) and
    /// stayed within their cap: `restore apply` commits them again instead of replaying.
    pub edits: Option<EditLog>,
}

/// Bytes of bucket `key` entries per committed transaction: what a replay holds in memory
/// (the entries, then their pages), whatever the length of the window.
pub const CHUNK_BYTES: usize = 16 << 20;

/// A replay onto `img` in transactions of about `chunk_bytes` each: feed the records in
/// stream order, then [`Replaying::finish`] commits the rest and checks the hashes.
pub struct Replaying<'a, I: Image + ?Sized> {
    img: &'a mut I,
    rp: Replayer,
    chunk_bytes: usize,
    commits: u32,
    kept: Option<Kept>,
}

/// The transactions a replay keeps ([`Replaying::keep_edits`]); `log` None once they
/// outgrew `cap`.
struct Kept {
    log: Option<EditLog>,
    cap: usize,
}

impl<'a, I: Image + ?Sized> Replaying<'a, I> {
    pub fn new(img: &'a mut I, to: i64, chunk_bytes: usize) -> Result<Self> {
        Self::start(img, to, chunk_bytes, None)
    }

    /// A replay that compacts the window ([`super::compact`]) as `survey` (a first read of the
    /// same records) says; `prove`: prove the newest live hash on the records (`restore
    /// plan`, `restore test`), not for a replay of records already proven (`restore
    /// apply`).
    pub fn compacting(
        img: &'a mut I,
        to: i64,
        chunk_bytes: usize,
        survey: Survey,
        prove: bool,
    ) -> Result<Self> {
        Self::start(img, to, chunk_bytes, Some((survey, prove)))
    }

    fn start(
        img: &'a mut I,
        to: i64,
        chunk_bytes: usize,
        compacting: Option<(Survey, bool)>,
    ) -> Result<Self> {
        let rp = {
            let db = Db::open(&*img).map_err(|e| e.in_file("snapshot"))?;
            let mut rp = Replayer::new(&db, to)?;
            if let Some((survey, prove)) = compacting {
                let proof = if prove {
                    WindowProof::prepare(&db, rp.base_revision(), &survey)?
                } else {
                    None
                };
                rp.compacting(survey, proof);
            }
            rp
        };
        Ok(Replaying {
            img,
            rp,
            chunk_bytes: chunk_bytes.max(1),
            commits: 0,
            kept: None,
        })
    }

    /// Keep every transaction committed from here on ([`Replayed::edits`]) while they
    /// take at most `cap` bytes; beyond that they are dropped and `edits` is None.
    pub fn keep_edits(&mut self, cap: usize) {
        self.kept = Some(Kept {
            log: Some(EditLog::new()),
            cap,
        });
    }

    pub fn feed(&mut self, r: &Record) -> Result<()> {
        self.rp.feed(r)?;
        if self.rp.pending_bytes() >= self.chunk_bytes {
            let edits = self.rp.take_edits();
            self.commit(&edits)?;
        }
        Ok(())
    }

    fn commit(&mut self, edits: &[Edit]) -> Result<()> {
        if edits.is_empty() {
            return Ok(());
        }
        commit_one(self.img, edits)?;
        self.commits += 1;
        if let Some(k) = &mut self.kept {
            let cap = k.cap;
            // A transaction the log cannot hold (never one the replay makes) just ends it.
            let fits = |l: &mut EditLog| l.push(edits).is_ok() && l.len() <= cap;
            if !k.log.as_mut().is_some_and(fits) {
                k.log = None;
            }
        }
        Ok(())
    }

    /// A compacted replay that reads the window once ([`super::Held`]): feed the records, then
    /// [`Replaying::settle`]. When [`Replaying::outgrown`], nothing was written: start
    /// again on [`Replaying::into_image`] with [`Replaying::compacting`].
    /// `prove`: prove the newest live hash on the records, as in
    /// [`Replaying::compacting`].
    pub fn holding(
        img: &'a mut I,
        to: i64,
        chunk_bytes: usize,
        budget: usize,
        prove: bool,
    ) -> Result<Self> {
        let mut r = Self::start(img, to, chunk_bytes, None)?;
        r.rp.holding(budget, prove);
        Ok(r)
    }

    /// A held replay whose records were fed before its database was at hand
    /// ([`Replayer::before_base`]) continued onto `img`, that database: then
    /// [`Replaying::outgrown`] and [`Replaying::settle`] as for [`Replaying::holding`].
    /// `Err(img)`, unchanged, when `img` is not at the revision the records were fed
    /// after: read them again onto it.
    pub fn resume(
        img: &'a mut I,
        mut rp: Replayer,
        chunk_bytes: usize,
    ) -> Result<std::result::Result<Self, &'a mut I>> {
        let attached = {
            let db = Db::open(&*img).map_err(|e| e.in_file("snapshot"))?;
            rp.attach_base(&db)?
        };
        if !attached {
            return Ok(Err(img));
        }
        Ok(Ok(Replaying {
            img,
            rp,
            chunk_bytes: chunk_bytes.max(1),
            commits: 0,
            kept: None,
        }))
    }

    /// Whether a held replay stopped because its changes outgrew its budget.
    pub fn outgrown(&self) -> bool {
        self.rp.outgrown()
    }

    /// The image, given back (after [`Replaying::outgrown`]: as it was).
    pub fn into_image(self) -> &'a mut I {
        self.img
    }

    /// The end of a held replay's read: prove the newest live hash on the records
    /// (when it was made to) and write the held changes. The proof
    /// needs the window in order when that hash was made with a compaction inside the
    /// window ([`Survey::proves_in_block`]): then nothing is written and the image comes
    /// back with the read's survey, to be read again ([`Replaying::compacting`]).
    pub fn settle(mut self) -> Result<Settled<'a, I>> {
        let Some(rel) = self.rp.release_held()? else {
            return Ok(Settled::Ready(Box::new(self)));
        };
        if let Some(survey) = rel.survey {
            let base = self.rp.base_revision();
            if !survey.proves_in_block(base) {
                return Ok(Settled::ReadAgain(self.img, survey));
            }
            let db = Db::open(&*self.img).map_err(|e| e.in_file("snapshot"))?;
            if let Some(mut p) = WindowProof::prepare(&db, base, &survey)? {
                p.feed_block(rel.block);
                self.rp.proven_by_records(Some(p.conclude()?));
            }
        }
        for (k, v) in rel.entries {
            self.rp.push_released(k, v);
            if self.rp.pending_bytes() >= self.chunk_bytes {
                let edits = self.rp.take_edits();
                self.commit(&edits)?;
            }
        }
        Ok(Settled::Ready(Box::new(self)))
    }

    /// Commit what is left, without the proof: for a replay of records already proven
    /// (`restore apply` of a plan whose records it has checked are the plan's).
    pub fn commit_rest(mut self) -> Result<Replay> {
        let edits = self.rp.take_edits();
        self.commit(&edits)?;
        self.rp.finish()
    }

    /// Commit what is left, then compute the `hashkv` at `to_revision` offline and compare
    /// every live hash recorded after the backup up to `to_revision` with the replayed
    /// data's hash at its revision (one pass over bucket `key` for all of them). A mismatch
    /// is an integrity error (exit 3) naming the revision.
    pub fn finish(self) -> Result<Replayed> {
        let (r, ()) = self.finish_with(true, |img, proof| {
            let db = Db::open(img).map_err(|e| e.in_file("replayed snapshot"))?;
            proof.feed_key_bucket(&db)
        })?;
        Ok(r)
    }

    /// [`finish`](Self::finish), with the proof's pass over bucket `key` made by a walk the
    /// caller makes anyway: `walk` must show every entry of the finished image to the
    /// [`Proof`] (`restore::predict::predict_visiting` does, on its page-by-page check),
    /// and its own answer comes back beside the proven replay. One read of a replayed
    /// database that may be many GiB, not two. The result's `hashkv` is None: the walk's
    /// own answer (the restore's prediction) has the hash, and computing it twice costs a
    /// second index of every key when the database is compacted.
    pub fn finish_walking<T>(
        self,
        walk: impl FnOnce(&I, &mut Proof) -> Result<T>,
    ) -> Result<(Replayed, T)> {
        self.finish_with(false, walk)
    }

    /// `at_to`: the proof also hashes at `to_revision`.
    fn finish_with<T>(
        mut self,
        at_to: bool,
        walk: impl FnOnce(&I, &mut Proof) -> Result<T>,
    ) -> Result<(Replayed, T)> {
        let edits = self.rp.take_edits();
        self.commit(&edits)?;
        let Replaying {
            img,
            rp,
            commits,
            kept,
            ..
        } = self;
        let replay = rp.finish()?;
        let mut proof = {
            let bolt = Db::open(&*img).map_err(|e| e.in_file("replayed snapshot"))?;
            Proof::prepare(&bolt, &replay, at_to)?
        };
        let answer = walk(img, &mut proof)?;
        let (at_to, mut checked) = proof.conclude()?;
        if let Some(Concluded::Proven(rev)) = replay.on_records {
            checked.push(rev);
        }
        Ok((
            Replayed {
                replay,
                hashkv: at_to.map(|a| a.best()),
                hashkv_while_compacting: at_to.and_then(|a| a.while_compacting()),
                checked,
                commits,
                edits: kept.and_then(|k| k.log),
            },
            answer,
        ))
    }
}

/// What a held replay's read came to ([`Replaying::settle`]).
pub enum Settled<'a, I: Image + ?Sized> {
    /// Its changes are written (the last chunk pending) and its live hash proven: finish it.
    Ready(Box<Replaying<'a, I>>),
    /// Its newest live hash needs the window read again, in order: the image, unchanged,
    /// and what the read surveyed, for [`Replaying::compacting`].
    ReadAgain(&'a mut I, Survey),
}

/// Commit `txns` (an [`EditLog`] a replay kept, decoded) onto `img`, one transaction
/// each, as that replay committed them.
pub fn commit_kept<I: Image + ?Sized>(img: &mut I, txns: &[Vec<Edit>]) -> Result<()> {
    txns.iter().try_for_each(|edits| commit_one(img, edits))
}

/// One transaction of `edits` computed on `img` as it is and committed to it.
fn commit_one<I: Image + ?Sized>(img: &mut I, edits: &[Edit]) -> Result<()> {
    let patch = {
        let db = Db::open(&*img).map_err(|e| e.in_file("replayed snapshot"))?;
        cow_patch(&db, edits).map_err(|e| e.in_file("replayed snapshot"))?
    };
    img.commit(&patch)
}

/// A copy of `db` in memory, to replay onto.
fn in_memory(db: &dyn ReadAt) -> Result<Vec<u8>> {
    let mut img = vec![0u8; db.size() as usize];
    db.read_exact_at(0, &mut img)
        .map_err(|e| Error::io("snapshot", e))?;
    Ok(img)
}

/// Replay `records` onto an in-memory copy of `db` up to `to` (tests, fuzzing, small
/// images): the replayed image with its proof.
pub fn replay(db: &dyn ReadAt, records: &[Record], to: i64) -> Result<(Vec<u8>, Replayed)> {
    let mut img = in_memory(db)?;
    let mut r = Replaying::new(&mut img, to, CHUNK_BYTES)?;
    for rec in records {
        r.feed(rec)?;
    }
    let done = r.finish()?;
    Ok((img, done))
}

/// [`replay`] with the window compacted at `to - 1` ([`super::compact`]): surveyed, then replayed
/// in transactions of `chunk_bytes`.
pub fn replay_compacted(
    db: &dyn ReadAt,
    records: &[Record],
    to: i64,
    chunk_bytes: usize,
) -> Result<(Vec<u8>, Replayed)> {
    let mut img = in_memory(db)?;
    let done = replay_surveyed(&mut img, records, to, chunk_bytes, None)?;
    Ok((img, done))
}

/// The second read of a compacted replay onto `img`, as `survey` (None: a survey of
/// `records`) says.
fn replay_surveyed(
    img: &mut Vec<u8>,
    records: &[Record],
    to: i64,
    chunk_bytes: usize,
    survey: Option<Survey>,
) -> Result<Replayed> {
    let survey = survey.unwrap_or_else(|| {
        let mut s = Survey::new(to);
        records.iter().for_each(|r| s.feed(r));
        s
    });
    let mut r = Replaying::compacting(img, to, chunk_bytes, survey, true)?;
    for rec in records {
        r.feed(rec)?;
    }
    r.finish()
}

/// [`replay_compacted`] reading the records once ([`Replaying::holding`], `budget` bytes
/// held), read twice only when that outgrows the budget or the proof needs it: what the
/// restore commands do.
pub fn replay_held(
    db: &dyn ReadAt,
    records: &[Record],
    to: i64,
    chunk_bytes: usize,
    budget: usize,
) -> Result<(Vec<u8>, Replayed)> {
    replay_held_as(db, records, to, (chunk_bytes, budget), false)
}

/// [`replay_held`]; `ahead`: the records fed before the database is at hand, as `restore
/// plan --compact` reads them while the backup is verified ([`Replayer::before_base`] at
/// the database's revision, then [`Replaying::resume`]).
pub fn replay_held_as(
    db: &dyn ReadAt,
    records: &[Record],
    to: i64,
    (chunk_bytes, budget): (usize, usize),
    ahead: bool,
) -> Result<(Vec<u8>, Replayed)> {
    let mut img = in_memory(db)?;
    let (r, read) = if ahead {
        let base = {
            let db = Db::open(&img[..]).map_err(|e| e.in_file("snapshot"))?;
            crate::format::etcd::last_revision(&db).map_err(|e| e.in_file("snapshot"))?
        };
        let mut rp = Replayer::before_base(base, to)?;
        rp.holding(budget, true);
        let read = records.iter().try_for_each(|rec| rp.feed(rec));
        match Replaying::resume(&mut img, rp, chunk_bytes)? {
            Ok(r) => (r, read),
            Err(_) => return Err(Error::Internal("not resumed at its own revision".into())),
        }
    } else {
        let mut r = Replaying::holding(&mut img, to, chunk_bytes, budget, true)?;
        let read = records.iter().try_for_each(|rec| r.feed(rec));
        (r, read)
    };
    let done = if r.outgrown() {
        replay_surveyed(r.into_image(), records, to, chunk_bytes, None)?
    } else {
        read?;
        match r.settle()? {
            Settled::Ready(r) => r.finish()?,
            Settled::ReadAgain(img, survey) => {
                replay_surveyed(img, records, to, chunk_bytes, Some(survey))?
            }
        }
    };
    Ok((img, done))
}
