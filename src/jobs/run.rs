//! One backup run, as `lifeboat backup` and each slot of the daemon make it: refuse a
//! destination given twice, back up, prune each destination that stored the backup (when
//! a retention policy is given), then the metrics of every destination. The CLI prints
//! what happened and the daemon logs it, through a [`Watch`]; the steps are the same.

use std::sync::Arc;
use std::time::Duration;

use super::backup::{backup, BackupOptions, BackupOutcome, Destination, Progress};
use super::prune::{after_backup, DestinationRun};
use crate::catalog::retention::Policy;
use crate::{Error, Result};

/// One metrics row: a destination, the stage that failed in it (if any), and how many
/// backups retention removed from it.
pub type Row<'a> = (&'a Destination, Option<&'static str>, u64);

/// What the caller does with each step's result: the CLI prints, the daemon logs and
/// serves. `pruned` and `metrics` are called on a blocking thread (stores block).
pub trait Watch: Send + Sync {
    /// The backup's result, before any prune.
    fn backed_up(&self, _r: &Result<BackupOutcome>) {}
    /// Each destination's run (failed stage, prune), in the plan's order.
    fn pruned(&self, _runs: &[DestinationRun]) {}
    /// The metrics of every destination of the plan after this attempt (`attempt`: its
    /// Unix time).
    fn metrics(&self, rows: &[Row<'_>], attempt: f64);
}

/// What a run works on.
pub struct RunPlan<'a> {
    pub opts: &'a BackupOptions,
    /// Every destination: the metrics cover them all. A destination not tried in this run
    /// keeps its state and counts no failure.
    pub dests: &'a [Destination],
    /// Prune each destination that stored the backup (`None`: no pruning).
    pub policy: Option<&'a Policy>,
    /// How long to wait for a destination's writer lock when pruning.
    pub lock_timeout: Duration,
}

/// What a run did: the backup's outcome, and per destination of the plan its failed stage
/// and prune.
pub struct Ran {
    pub backup: Result<BackupOutcome>,
    pub runs: Vec<DestinationRun>,
}

/// A destination named twice is refused before anything runs (the same store spelled two
/// ways is refused when the stores are locked). [`run_backup`] checks; the CLI checks its
/// `--to` list with it before opening any store.
pub fn refuse_duplicates<S: AsRef<str>>(names: &[S]) -> Result<()> {
    for (i, d) in names.iter().enumerate() {
        if names[..i].iter().any(|x| x.as_ref() == d.as_ref()) {
            return Err(Error::flag("--to", format!("{} given twice", d.as_ref())));
        }
    }
    Ok(())
}

/// Back up into `tried` (the plan's destinations, or those of them still to do), then
/// prune and publish the metrics. An `Err` is a run refused before it started (a
/// destination given twice); a failed backup is in [`Ran::backup`], with its metrics
/// already published.
pub async fn run_backup(
    plan: &RunPlan<'_>,
    tried: &[Destination],
    progress: Arc<dyn Progress>,
    watch: Arc<dyn Watch>,
) -> Result<Ran> {
    let names: Vec<&str> = tried.iter().map(|d| d.name.as_str()).collect();
    refuse_duplicates(&names)?;
    let attempt = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let r = backup(plan.opts, tried, progress).await;
    watch.backed_up(&r);
    let dests: Vec<Destination> = plan.dests.to_vec();
    let tried: Vec<String> = tried.iter().map(|d| d.name.clone()).collect();
    let (policy, lock) = (plan.policy.cloned(), plan.lock_timeout);
    // Stores block: prune and metrics run on a blocking thread.
    let done = crate::store::blocking::offload(move || {
        let runs = match &r {
            Ok(outcome) => after_backup(&dests, outcome, policy.as_ref(), lock),
            // Nothing stored: every destination tried failed at the run's stage.
            Err(e) => dests
                .iter()
                .map(|d| DestinationRun {
                    destination: d.name.clone(),
                    stage: tried
                        .contains(&d.name)
                        .then(|| super::Stage::of(e).as_str()),
                    pruned: 0,
                    prune_error: None,
                })
                .collect(),
        };
        watch.pruned(&runs);
        let rows: Vec<Row<'_>> = dests
            .iter()
            .zip(&runs)
            .map(|(d, r)| (d, r.stage, r.pruned))
            .collect();
        watch.metrics(&rows, attempt);
        Ran { backup: r, runs }
    })
    .await;
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_given_twice_is_refused_with_the_cli_message() {
        assert!(refuse_duplicates(&["/a", "s3://b/p"]).is_ok());
        let e = refuse_duplicates(&["/a", "s3://b/p", "/a"]).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert_eq!(e.to_string(), "--to: /a given twice");
    }
}
