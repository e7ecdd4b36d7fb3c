//! The chosen records replayed onto a copy of the base backup's database: for `restore
//! plan` (the proof and what `restore check` must find), `restore test` (the database it
//! boots) and `restore apply` (the database a member is written from).
//!
//! The copy is an unlinked temporary file in a directory the restore already writes to
//! ([`FileImage`]), and the records are read from their source once, one at a time,
//! committed in transactions of [`CHUNK_BYTES`]: memory stays bounded whatever the
//! window's length, and the restore then reads the copy as its snapshot.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::ahead::{Ahead, ReadAhead};
use super::{
    read_window, read_window_as, Chosen, KeptEdits, Read, RecordSource, ReplayPlan, Scanned,
    EDITS_FILE,
};
use crate::format::etcd::hashkv::PrePass;
use crate::io::ReadAt;
use crate::restore::replay::{
    commit_kept, FileImage, Image, PrePassing, Replayed, Replaying, Settled, Survey, CHUNK_BYTES,
};
use crate::{Error, Result};

/// Replay `chosen` onto a copy of `db` (a database, no trailer) made in `work`; the copy
/// must have the SHA-256 of the chosen backup's manifest (see [`FileImage::copy_of`]), so
/// what is replayed onto is what was verified.
pub fn replay_chosen(
    db: &dyn ReadAt,
    object: &str,
    chosen: &Chosen,
    src: &dyn RecordSource,
    work: &Path,
) -> Result<(FileImage, Replayed, Scanned)> {
    let mut img = copy_checked(db, object, chosen, work)?;
    let (r, scanned) = replay_window(&mut img, chosen, src)?;
    Ok((img, r, scanned))
}

/// A copy of `db` in `work` that must have the SHA-256 of the chosen backup's manifest.
fn copy_checked(db: &dyn ReadAt, object: &str, chosen: &Chosen, work: &Path) -> Result<FileImage> {
    let mut want = [0u8; 32];
    hex::decode_to_slice(&chosen.manifest.db_sha256, &mut want)
        .map_err(|_| Error::integrity(object, "the manifest's db_sha256 is not a hex SHA-256"))?;
    FileImage::copy_of(work, db, Some((want, object)))
}

/// Replay the chosen window onto `img`, with its proof (every live hash in it checked).
fn replay_window(
    img: &mut FileImage,
    chosen: &Chosen,
    src: &dyn RecordSource,
) -> Result<(Replayed, Scanned)> {
    let (rep, scanned) = feed_window(img, chosen, src, false, None)?;
    Ok((rep.finish()?, scanned))
}

/// The chosen window read from `src` and fed to a replay onto `img`, left to finish
/// (with `--compact`, see [`compacted`]; `keep`: as there; `ahead`: the window already
/// read, see [`super::ahead`]).
fn feed_window<'a, I: Image + ?Sized>(
    img: &'a mut I,
    chosen: &Chosen,
    src: &dyn RecordSource,
    keep: bool,
    ahead: Option<ReadAhead>,
) -> Result<(Replaying<'a, I>, Scanned)> {
    let window = (chosen.manifest.revision, chosen.to_revision);
    if !chosen.compact {
        let mut rep = Replaying::new(img, chosen.to_revision, CHUNK_BYTES)?;
        let scanned = read_window(window, &chosen.backups, src, &mut |r| rep.feed(r))?;
        return Ok((rep, scanned));
    }
    let holding = match ahead {
        Some(a) => Holding::Ahead(Box::new(a)),
        None => Holding::Budget(chosen.hold_bytes),
    };
    compacted(
        img,
        window,
        &chosen.backups,
        src,
        Read::Checked,
        holding,
        keep,
    )
}

/// How a compacted replay's first read holds the window's changes: in at most this many
/// bytes, or as a read made ahead already did (see [`super::ahead`]).
enum Holding {
    Budget(usize),
    Ahead(Box<ReadAhead>),
}

/// Memory a compacted replay may hold its window's changes in ([`Replaying::holding`]):
/// a quarter of what the host has available, between 64 MiB and 2 GiB (256 MiB where
/// that is not known).
pub fn hold_budget() -> usize {
    const MIB: u64 = 1 << 20;
    crate::host::mem_available().map_or(256 * MIB, |m| (m / 4).clamp(64 * MIB, 2048 * MIB)) as usize
}

/// A window replayed with `--compact` onto `img`, left to finish: read once, each key's
/// newest change held in memory (at most `budget` bytes) until the window has been read
/// ([`Replaying::holding`]). Read twice when that outgrows the budget (surveyed, then
/// replayed: [`survey_window`]), or when the proof needs the window in order (its newest
/// live hash was made with a compaction inside it: [`Settled::ReadAgain`]); the second
/// read must find the records of the first (count and digest). `how`: [`Read::Checked`]
/// for a plan or a test, which prove the newest live hash; the plan's digest for `restore
/// apply`, which does not (the plan did). `keep`: keep the transactions committed (as
/// much as the budget holds: [`Replayed::edits`]), for a plan's `restore apply`.
/// `holding`: the budget, or the first read already made.
fn compacted<'a, I: Image + ?Sized>(
    img: &'a mut I,
    window: (i64, i64),
    backups: &[crate::catalog::Manifest],
    src: &dyn RecordSource,
    how: Read,
    holding: Holding,
    keep: bool,
) -> Result<(Replaying<'a, I>, Scanned)> {
    let to = window.1;
    let prove = how == Read::Checked;
    let read_now = |img: &'a mut I, budget: usize| {
        let mut rep = Replaying::holding(img, to, CHUNK_BYTES, budget, prove)?;
        let read = read_window_as(window, how, backups, src, &mut |r| rep.feed(r));
        Ok::<_, Error>((rep, read, budget))
    };
    let (mut rep, read, budget) = match holding {
        Holding::Budget(b) => read_now(img, b)?,
        // A base at another revision than the manifest's (never one a backup makes):
        // the read made ahead is of no use, read the window onto it as it is.
        Holding::Ahead(a) => {
            let ReadAhead { rp, read, budget } = *a;
            match Replaying::resume(img, rp, CHUNK_BYTES)? {
                Ok(rep) => (rep, read, budget),
                Err(img) => read_now(img, budget)?,
            }
        }
    };
    let keep = |rep: &mut Replaying<'_, I>| {
        if keep {
            rep.keep_edits(budget);
        }
    };
    keep(&mut rep);
    if rep.outgrown() {
        let img = rep.into_image();
        let (survey, surveyed) = survey_window(window, backups, src)?;
        let mut rep = Replaying::compacting(img, to, CHUNK_BYTES, survey, prove)?;
        keep(&mut rep);
        let scanned = reread_window(window, how, &surveyed, src, &mut rep)?;
        return Ok((rep, scanned));
    }
    let scanned = read?;
    match rep.settle()? {
        Settled::Ready(rep) => Ok((*rep, scanned)),
        Settled::ReadAgain(img, survey) => {
            let mut rep = Replaying::compacting(img, to, CHUNK_BYTES, survey, prove)?;
            keep(&mut rep);
            let again = reread_window(window, how, &scanned, src, &mut rep)?;
            Ok((rep, again))
        }
    }
}

/// The second read of a compacted window, checked and digested, fed to the replay. What
/// the survey learnt must be what this read shows: the replay surveys it again and refuses
/// to finish otherwise ([`Replaying::compacting`]); the count is compared here, and the
/// digest when the first read made one (a held read the proof sends back).
fn reread_window<I: Image + ?Sized>(
    window: (i64, i64),
    how: Read,
    surveyed: &Scanned,
    src: &dyn RecordSource,
    rep: &mut Replaying<'_, I>,
) -> Result<Scanned> {
    let scanned = read_window_as(window, how, &[], src, &mut |r| rep.feed(r))?;
    // A survey's read has no digest to compare (empty); a checked first read has one.
    let digests_differ = !surveyed.sha256.is_empty() && scanned.sha256 != surveyed.sha256;
    if scanned.records != surveyed.records || digests_differ {
        return Err(crate::restore::replay::read_twice_differ());
    }
    Ok(scanned)
}

/// The first read of a window replayed with `--compact` ([`Read::Survey`]): which change
/// of each key is written ([`Survey`]). The replay's own read checks it
/// ([`reread_window`]).
fn survey_window(
    window: (i64, i64),
    backups: &[crate::catalog::Manifest],
    src: &dyn RecordSource,
) -> Result<(Survey, Scanned)> {
    let mut survey = Survey::new(window.1);
    let scanned = read_window_as(window, Read::Survey, backups, src, &mut |r| {
        survey.feed(r);
        Ok(())
    })?;
    Ok((survey, scanned))
}

/// Replay the chosen window onto `img` and predict the restore `spec` makes of the result,
/// the replay's proof made on the prediction's walk (one read of the replayed database).
/// A compacted replay writes nothing until its window has been read: the hashkv's
/// pre-pass over the base's revisions is read meanwhile, on a thread of its own
/// ([`PrePassing`]), instead of after the replay.
/// `ahead`: what was made while the base was verified, see [`super::ahead`] (the
/// pre-pass among it).
fn replay_predicting(
    img: &mut FileImage,
    chosen: &Chosen,
    src: &dyn RecordSource,
    spec: &crate::restore::native::RestoreSpec,
    object: &str,
    keep: bool,
    ahead: Option<Ahead>,
) -> Result<(Replayed, Scanned, crate::restore::predict::Prediction)> {
    if !chosen.compact {
        return predicting(
            img,
            spec,
            object,
            |_| None,
            |img| feed_window(img, chosen, src, keep, None),
        );
    }
    let (mut img, read) = match ahead {
        Some(a) => (PrePassing::finished(img, a.prepass), a.read),
        None => (PrePassing::start(img, chosen.manifest.revision)?, None),
    };
    predicting(&mut img, spec, object, PrePassing::take, |img| {
        feed_window(img, chosen, src, keep, read)
    })
}

/// [`replay_predicting`] onto `img`, fed by `feed`, the walk given what `prepass` has of
/// the pre-pass.
fn predicting<'a, I: Image>(
    img: &'a mut I,
    spec: &crate::restore::native::RestoreSpec,
    object: &str,
    prepass: impl FnOnce(&I) -> Option<PrePass>,
    feed: impl FnOnce(&'a mut I) -> Result<(Replaying<'a, I>, Scanned)>,
) -> Result<(Replayed, Scanned, crate::restore::predict::Prediction)> {
    let (rep, scanned) = feed(img)?;
    let (r, p) = rep.finish_walking(|img, proof| {
        crate::restore::predict::predict_visiting(img, spec, object, proof, prepass(img))
    })?;
    Ok((r, scanned, p))
}

/// Make `plan` a point-in-time plan: replay the chosen records onto the base backup's
/// snapshot offline (every live hash recorded in the window is checked: a mismatch is an
/// integrity error, exit 3) and record the target, the replay and what `restore check`
/// must then find (revision, hashkv and key count of the replayed data). The replayed
/// copy is made in `work`.
///
/// Returns the edit log to write beside plan.json as [`EDITS_FILE`] (named in
/// `plan.replay.edits`), when the replay kept one.
pub fn plan_replay(
    plan: &mut crate::restore::plan::Plan,
    snapshot: &dyn ReadAt,
    object: &str,
    chosen: &Chosen,
    src: &dyn RecordSource,
    work: &Path,
) -> Result<Option<Vec<u8>>> {
    let db = crate::restore::predict::database_of(snapshot);
    let img = copy_checked(&db, object, chosen, work)?;
    plan_replay_onto(plan, (img, None), object, chosen, src)
}

/// [`plan_replay`] onto `img`, a copy of the chosen backup's database already checked
/// against its manifest (`Repository::verify_copying` made it), with what was made
/// while it was ([`super::verify_reading_ahead`]).
pub fn plan_replay_onto(
    plan: &mut crate::restore::plan::Plan,
    (mut img, ahead): (FileImage, Option<Ahead>),
    object: &str,
    chosen: &Chosen,
    src: &dyn RecordSource,
) -> Result<Option<Vec<u8>>> {
    // A plan's directory is copied around and kept; what an encrypted backup or window
    // holds is never written there decrypted, so such a replay keeps nothing (apply then
    // reads the window itself).
    let encrypted = !matches!(chosen.manifest.encryption.as_str(), "" | "none")
        || src.encrypted(chosen.manifest.revision, chosen.to_revision)?;
    if encrypted && chosen.compact {
        tracing::info!(
            "the plan keeps no {EDITS_FILE}: the backup or the captured changes are encrypted, and that file would hold what they hold decrypted; restore apply reads the captured changes from the store instead"
        );
    }
    let spec = crate::restore::predict::spec_of(plan);
    let (r, scanned, p) =
        replay_predicting(&mut img, chosen, src, &spec, object, !encrypted, ahead)?;
    plan.to_revision = Some(chosen.to_revision);
    plan.to_time = chosen.to_time.clone();
    let mut rp = ReplayPlan::new(
        r.replay.base_revision,
        &scanned,
        r.replay.stats,
        r.checked,
        chosen.compact,
    );
    let log = r.edits.filter(|l| !l.is_empty()).map(|l| {
        let transactions = l.transactions();
        let bytes = l.into_bytes();
        rp.edits = Some(KeptEdits {
            file: EDITS_FILE.into(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
            transactions,
        });
        bytes
    });
    plan.replay = Some(rp);
    plan.expected_revision = Some(p.revision);
    plan.expected_hashkv = Some(p.hashkv);
    plan.expected_hashkv_while_compacting = p.hashkv_while_compacting;
    plan.expected_keys = Some(p.keys);
    if let Some(crate::restore::replay::Concluded::Unknowable(rev)) = r.replay.on_records {
        plan.warnings.push(format!(
            "the live hash capture recorded at revision {rev} is not proven: no key was live there and the compaction it was made with is inside the window, which a restore compacted as it replays cannot tell apart; plan without --compact to have it proven"
        ));
    }
    if chosen.to_revision > r.replay.base_revision {
        plan.warnings.push(format!(
            "users, roles and auth settings are those of backup {} (revision {}): capture records key changes and leases only, so auth changes made after it are not restored",
            plan.backup_id, r.replay.base_revision
        ));
    }
    Ok(log)
}

/// What `restore test --to-revision R` boots and expects: the fetched snapshot `img` (a
/// throwaway, checked while fetched, with what was made meanwhile:
/// [`super::verify_reading_ahead`]) replayed in place, and its new size and what a restore
/// of it answers: hashkv at R (live hashes in the window checked on the way) and the key
/// count.
pub fn test_replay(
    (mut img, ahead): (FileImage, Option<Ahead>),
    object: &str,
    chosen: &Chosen,
    src: &dyn RecordSource,
) -> Result<(u64, crate::restore::predict::Prediction)> {
    // Any one-member spec: membership changes neither hashkv nor keys.
    let spec = crate::restore::native::RestoreSpec {
        members: vec![crate::restore::native::MemberSpec {
            name: "pitr".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
        }],
        token: "pitr".into(),
        bump_revision: None,
        mark_compacted: false,
    };
    let (_, _, p) = replay_predicting(&mut img, chosen, src, &spec, object, false, ahead)?;
    Ok((img.size(), p))
}

/// For `restore apply` of a point-in-time plan: the plan's records read again from `src`
/// and replayed onto the fetched database at `snapshot` (its first `size` bytes) in place,
/// refused unless they are the records the plan was made with (same count and digest).
/// Returns the database's new size; `size` for a plan without a target revision.
///
/// A plan that kept its replay's transactions ([`ReplayPlan::edits`]) has them committed
/// from its directory `plan_dir` instead, once the file is found to be the one the plan
/// names; the records are read only when that file is missing.
pub fn apply_replay(
    plan: &crate::restore::plan::Plan,
    plan_dir: Option<&Path>,
    snapshot: &Path,
    size: u64,
    src: &dyn RecordSource,
) -> Result<u64> {
    let (Some(to), Some(rp)) = (plan.to_revision, &plan.replay) else {
        return Ok(size);
    };
    if let (Some(k), Some(dir)) = (&rp.edits, plan_dir) {
        if let Some(txns) = read_kept(dir, k)? {
            let mut img = FileImage::in_place(snapshot, size)?;
            commit_kept(&mut img, &txns)?;
            return Ok(img.size());
        }
    }
    let what = format!("capture records ({}, {to}]", rp.after);
    let changed = |detail: String| {
        Error::integrity(
            &what,
            format!(
                "{detail}; the plan was made with {} records with SHA-256 {}; make a new plan",
                rp.records, rp.records_sha256
            ),
        )
    };
    let usage_is_change = |e: Error| {
        if e.exit_code() == crate::ExitCode::Usage {
            changed(e.to_string())
        } else {
            e
        }
    };
    let the_plans = |s: &Scanned| {
        if s.sha256 != rp.records_sha256 || s.records != rp.records {
            return Err(changed(format!(
                "{} records with SHA-256 {}",
                s.records, s.sha256
            )));
        }
        Ok(())
    };
    let window = (rp.after, to);
    let mut img = FileImage::in_place(snapshot, size)?;
    let how = Read::CheckedAs(rp.records_sha256_of);
    let rep = if rp.compacted {
        let holding = Holding::Budget(hold_budget());
        let (rep, scanned) =
            compacted(&mut img, window, &[], src, how, holding, false).map_err(usage_is_change)?;
        the_plans(&scanned)?;
        rep
    } else {
        let mut rep = Replaying::new(&mut img, to, CHUNK_BYTES)?;
        let scanned =
            read_window_as(window, how, &[], src, &mut |r| rep.feed(r)).map_err(usage_is_change)?;
        the_plans(&scanned)?;
        rep
    };
    // The plan replayed these same records (same count and SHA-256) onto the same database
    // and proved every live hash on them: apply does not walk the replayed database again.
    rep.commit_rest()?;
    Ok(img.size())
}

/// The transactions a plan kept in `dir` (see [`apply_replay`]): None when the file is not
/// there (the plan's directory was copied without it); an integrity error (exit 3) when it
/// is not the file the plan names (size, SHA-256) or does not decode.
fn read_kept(
    dir: &Path,
    k: &KeptEdits,
) -> Result<Option<Vec<Vec<crate::format::bolt::write::Edit>>>> {
    // plan.json names a file of its own directory, never a path elsewhere.
    if k.file != EDITS_FILE {
        return Err(Error::integrity(
            dir.join(crate::restore::plan::PLAN_FILE)
                .display()
                .to_string(),
            format!(
                "replay.edits.file is {:?}, not {EDITS_FILE:?}: make a new plan",
                k.file
            ),
        ));
    }
    let path = dir.join(EDITS_FILE);
    let file = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "{file} is missing (the plan's directory was copied without it): reading the captured changes from the store instead"
            );
            return Ok(None);
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != k.bytes || sha != k.sha256 {
        return Err(Error::integrity(
            &file,
            format!(
                "{} bytes with SHA-256 {sha}, the plan names {} bytes with SHA-256 {}: copy the plan's directory again as `restore plan` wrote it (or remove this file to have the captured changes read from the store)",
                bytes.len(),
                k.bytes,
                k.sha256
            ),
        ));
    }
    let txns = crate::format::bolt::write::log::decode(&bytes).map_err(|e| Error::Corrupt {
        file: file.clone(),
        page: None,
        offset: Some(e.offset as u64),
        what: format!("edit log: {}", e.what),
    })?;
    if txns.len() as u64 != k.transactions {
        return Err(Error::integrity(
            &file,
            format!(
                "{} transactions, the plan names {}: make a new plan",
                txns.len(),
                k.transactions
            ),
        ));
    }
    Ok(Some(txns))
}
