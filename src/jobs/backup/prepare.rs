//! Before the stream: every destination behind the retry wrapper, locked in one global
//! order, with what killed runs left removed. Each destination drops out on its own.

use std::sync::Arc;
use std::time::Duration;

use super::{blocking, BackupOptions, Destination, Target};
use crate::catalog;
use crate::store::retry::{RetryPolicy, RetryStore};
use crate::store::{Store, StoreLock};
use crate::{Error, Result};

/// The run's targets, one per destination in order, and the writer locks held for the
/// whole run. A destination that cannot be locked or cleaned is a target that failed.
pub(super) async fn prepare(
    opts: &BackupOptions,
    dests: &[Destination],
) -> Result<(Vec<Target>, Vec<Box<dyn StoreLock>>)> {
    // Every store call goes through the retry wrapper: transient failures (a timeout,
    // throttling) are retried with back-off, the rest fail at once.
    let mut targets: Vec<Target> = dests
        .iter()
        .map(|d| Target {
            name: d.name.clone(),
            store: Arc::new(RetryStore::new(
                Arc::clone(&d.store),
                RetryPolicy::default(),
            )),
            encryption: d.encryption.clone(),
            digest: None,
            failed: None,
        })
        .collect();
    // Writer locks for the whole run; with them held, debris of killed runs can go.
    let stores: Vec<(String, Arc<dyn Store>)> = targets
        .iter()
        .map(|t| (t.name.clone(), Arc::clone(&t.store)))
        .collect();
    let wait = opts.lock_timeout;
    let (locks, early) = blocking(move || lock_and_clean(&stores, wait)).await?;
    for (i, e) in early {
        tracing::debug!("destination {} left out: {e}", targets[i].name);
        targets[i].failed = Some(e);
    }
    Ok((targets, locks))
}

/// Lock every destination (in one global order), then remove what killed runs left. Each
/// destination succeeds or fails on its own (a missing bucket must not cost the local
/// copy): failures come back by index; only a store given twice fails the whole run.
#[allow(clippy::type_complexity)]
fn lock_and_clean(
    dests: &[(String, Arc<dyn Store>)],
    wait: Duration,
) -> Result<(Vec<Box<dyn StoreLock>>, Vec<(usize, Error)>)> {
    let labelled: Vec<(String, &dyn Store)> = dests
        .iter()
        .map(|(name, s)| (format!("--to {name}"), s.as_ref()))
        .collect();
    let mut locks = Vec::new();
    let mut failed = Vec::new();
    let mut locked = Vec::new();
    for (i, lock) in crate::store::lock_each_in_order(&labelled, wait)? {
        match lock {
            Ok(l) => {
                locks.push(l);
                locked.push(i);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    // Each destination cleans on its own thread: a hung server fails at its deadline
    // without holding up the others.
    let cleaned = each(locked, |i| {
        let (name, store) = &dests[i];
        clean(name, store.as_ref())
    });
    for (i, r) in cleaned {
        if let Err(e) = r {
            failed.push((i, e));
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    Ok((locks, failed))
}

/// `f` of every item, each on its own thread (stores block, and one destination's slow or
/// hung server must not hold up the others); results in the items' order.
pub(super) fn each<I: Send + Copy, T: Send>(
    items: Vec<I>,
    f: impl Fn(I) -> T + Sync,
) -> Vec<(I, T)> {
    if items.len() <= 1 {
        return items.into_iter().map(|i| (i, f(i))).collect();
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .into_iter()
            .map(|i| (i, s.spawn(move || f(i))))
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| (i, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
            .collect()
    })
}

/// Remove the partial objects and orphaned data objects of runs that did not finish.
fn clean(name: &str, store: &dyn Store) -> Result<()> {
    for p in store.clean_partials()? {
        tracing::info!("removed {p} from {name}: left by a run that did not finish");
    }
    for o in catalog::orphans(store)? {
        tracing::info!(
            "removed {o} from {name}: a data object without manifest (a run that did not finish)"
        );
        store.remove(&o)?;
    }
    Ok(())
}
