//! `restore plan` from start to finish, as the CLI asks for it: the backup (verified) or
//! the data dir it plans from, the plan, what `restore check` will compare the restored
//! cluster with (predicted, or replayed to a revision), and the plan's files. The CLI only
//! turns flags into a [`PlanRequest`] and prints the [`Planned`].

use std::path::{Path, PathBuf};

use super::pitr::{self, CatalogRecords, Chosen, Target};
use super::plan::{
    db_holds_kubernetes, make_plan, source_of_db, write_plan_with, KubernetesKeys, Plan, PlanInput,
    Source, DEFAULT_BUMP,
};
use super::predict::predict_plan;
use super::replay::FileImage;
use super::topology::Topology;
use crate::catalog::{Access, Manifest, Repository};
use crate::{Error, Result};

/// What a plan is made from.
pub enum PlanFrom<'a> {
    /// A member's data dir, read in place (`--from-data-dir`).
    DataDir { dir: &'a Path, access: &'a Access },
    /// Backup `id` (or `latest`) of `repo`, the destination `dest` (`--from DEST[:ID]`).
    Backup {
        repo: Repository,
        dest: &'a str,
        id: &'a str,
    },
}

/// The revision bump (`--bump-revision N`, `--no-bump-revision`, or neither).
#[derive(Debug, Clone, Copy)]
pub enum Bump {
    Off,
    By(u64),
    /// [`DEFAULT_BUMP`] when the database holds Kubernetes objects, none otherwise.
    Auto,
}

pub struct PlanRequest<'a> {
    pub topology: &'a Topology,
    pub topology_file: &'a Path,
    pub from: PlanFrom<'a>,
    /// A point-in-time restore's target (`--to-revision`, `--to-time`); only with a backup.
    pub target: Option<Target>,
    /// Compact the replayed changes at the target (`--compact`).
    pub compact: bool,
    pub bump: Bump,
    /// The plan's directory, and whether files already there may be replaced.
    pub out: &'a Path,
    pub force: bool,
}

pub struct Planned {
    pub plan: Plan,
    /// Every file written, in the order written.
    pub files: Vec<PathBuf>,
}

/// The verified copy of a backup's database a point-in-time replay writes onto, and the
/// window a compacted replay read meanwhile.
type VerifiedCopy = (FileImage, Option<pitr::Ahead>);

/// The backup a plan is made from, once verified.
struct Verified {
    repo: Repository,
    manifest: Manifest,
    /// A point-in-time plan's choice of backup and records, with the verified copy of the
    /// database the replay writes onto (None when verify kept no copy).
    pitr: Option<(Chosen, Option<VerifiedCopy>)>,
    kubernetes: bool,
}

/// Make, check and write the plan `req` asks for.
pub fn plan_restore(req: PlanRequest<'_>) -> Result<Planned> {
    let (source, from, kubernetes, verified) = match req.from {
        PlanFrom::DataDir { dir, access } => {
            let src = source_of_db(dir, access)?;
            let file = src.db_file.clone().unwrap_or_default();
            let r =
                crate::io::FileReader::open(Path::new(&file)).map_err(|e| Error::io(&file, e))?;
            let k = db_holds_kubernetes(&r, &file)?;
            (src, dir.display().to_string(), k, None)
        }
        PlanFrom::Backup { repo, dest, id } => {
            let v = verified_backup(repo, id, req.target, req.compact, req.out)?;
            let src = Source::of_manifest(&v.manifest);
            (src, dest.to_string(), v.kubernetes, Some(v))
        }
    };
    let bump_revision = match req.bump {
        Bump::Off => None,
        Bump::By(n) => Some(n),
        Bump::Auto => kubernetes.then_some(DEFAULT_BUMP),
    };
    let mut plan = make_plan(
        req.topology,
        &PlanInput {
            from: &from,
            manifest: &source,
            bump_revision,
            kubernetes,
            topology_file: &req.topology_file.display().to_string(),
        },
    )?;
    let kept = expect(&mut plan, verified, &source)?;
    let edits = pitr::EDITS_FILE;
    let extra: Vec<(&str, &[u8])> = kept.iter().map(|b| (edits, b.as_slice())).collect();
    let files = write_plan_with(&plan, req.out, req.force, &extra)?;
    if kept.is_none() {
        // A replaced plan's kept edits: no plan names them any more.
        let _ = std::fs::remove_file(req.out.join(edits));
    }
    Ok(Planned { plan, files })
}

/// Backup `id` of `repo` (for a point-in-time plan, the newest one the target can be
/// replayed onto), verified: its pages checked, which also says whether it holds
/// Kubernetes objects, without a second decode. A point-in-time plan has verify write the
/// database it decodes: the replay's copy (and a compacted one reads its window
/// meanwhile). A backup that does not verify is refused (exit 3).
fn verified_backup(
    repo: Repository,
    id: &str,
    target: Option<Target>,
    compact: bool,
    out: &Path,
) -> Result<Verified> {
    let chosen = pitr::choose_target(&repo, id, target, compact)?;
    let m = match &chosen {
        Some(c) => c.manifest.clone(),
        None => repo.resolve(id)?,
    };
    let mut k8s = KubernetesKeys::default();
    let (v, pitr) = match chosen {
        Some(c) => {
            let src = CatalogRecords {
                repo: &repo,
                cluster_id: m.cluster_id.to_string(),
            };
            let (v, img, ahead) = pitr::verify_reading_ahead(&c, &src, || {
                let mut img = FileImage::empty_in(&work_dir(out))?;
                let v = repo.verify_copying(&m, &mut k8s, &mut img)?;
                let ok = v.ok;
                Ok((v, ok.then_some(img)))
            })?;
            (v, Some((c, img.map(|img| (img, ahead)))))
        }
        None => (repo.verify_visiting(&m, &|_| {}, &mut k8s)?, None),
    };
    if !v.ok {
        return Err(Error::integrity(
            v.object,
            format!(
                "backup {} does not verify: {}; plan from another backup",
                m.id,
                v.problems.join("; ")
            ),
        ));
    }
    Ok(Verified {
        repo,
        manifest: m,
        pitr,
        kubernetes: k8s.0,
    })
}

/// What `restore check` will compare the restored cluster with, recorded in `plan`: the
/// backup's database predicted, or a point-in-time plan's replay onto its verified copy.
/// Returns the replay's kept edits, if it keeps them.
fn expect(plan: &mut Plan, verified: Option<Verified>, source: &Source) -> Result<Option<Vec<u8>>> {
    match (verified, &source.db_file) {
        (Some(v), _) => {
            let object = v.repo.object_of(&v.manifest);
            match v.pitr {
                Some((c, Some(copy))) => {
                    let src = CatalogRecords {
                        repo: &v.repo,
                        cluster_id: v.manifest.cluster_id.to_string(),
                    };
                    pitr::plan_replay_onto(plan, copy, &object, &c, &src)
                }
                _ => {
                    predict_plan(plan, &v.repo.open_db(&v.manifest)?, &object)?;
                    Ok(None)
                }
            }
        }
        (None, Some(file)) => {
            let r = crate::io::FileReader::open(Path::new(file)).map_err(|e| Error::io(file, e))?;
            predict_plan(plan, &r, file)?;
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// Where a point-in-time plan builds its replayed copy of the database: the plan's
/// directory if it exists, else the nearest existing directory above it (the operator
/// chose that filesystem for the restore's files).
fn work_dir(out: &Path) -> PathBuf {
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    abs.ancestors()
        .find(|d| d.is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}
