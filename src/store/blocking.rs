//! Store calls block; async code reaches them only through [`offload`].
//!
//! A thread may make a blocking store call when it is outside any tokio runtime (the
//! CLI's main thread before or after `block_on`, a plain `std::thread`, the scoped
//! per-destination threads of a backup) or when it runs a closure given to [`offload`]
//! (a thread of the runtime's blocking pool, marked for the closure's length). A call
//! from anywhere else (a task on a runtime worker, or the future a `block_on` drives)
//! would stall or panic the runtime; [`check`] turns it into an [`Error::Internal`]
//! naming the call instead, and the S3 store checks before every request.
//!
//! `offload` is the crate's one door to the blocking pool: `clippy.toml` disallows
//! `tokio::task::spawn_blocking` and `block_in_place` everywhere else, so a new async
//! caller cannot take a blocking thread that `check` does not know about, and a store
//! call made on an async task fails the first test that makes it, with one line.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{Error, Result};

/// Blocking work running now: offloaded closures, and threads that hold a [`Working`].
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts the holder's thread as blocking work in flight until dropped (see
/// [`in_flight`]). [`offload`] takes one for its closure; a plain thread that makes store
/// calls while the runtime lives (capture's writers) takes its own.
pub struct Working(());

impl Working {
    pub fn start() -> Working {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Working(())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How much blocking work is in flight. A runtime must not be dropped while any is: its
/// timers stop with it, and an S3 request still waiting on one panics ("A Tokio 1.x
/// context was found, but it is being shutdown"). The daemon waits for this to reach 0
/// before it returns, and the CLI's edge leaves the runtime alive (the process exits
/// around it) if it has not.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Wait until no blocking work is in flight, or `limit` has passed; the work still in
/// flight then.
pub async fn settle(limit: Duration) -> usize {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let n = in_flight();
        if n == 0 || tokio::time::Instant::now() >= end {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

thread_local! {
    /// Set while this thread runs a closure given to [`offload`].
    static OFFLOADED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread for as long as it lives (restoring what was there, also when
/// the closure panics).
struct Mark(bool);

impl Mark {
    fn set() -> Mark {
        Mark(OFFLOADED.with(|m| m.replace(true)))
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        let was = self.0;
        let _ = OFFLOADED.try_with(|m| m.set(was));
    }
}

/// Whether the current thread may block on a store call (see the module docs).
pub fn may_block() -> bool {
    tokio::runtime::Handle::try_current().is_err() || OFFLOADED.try_with(Cell::get).unwrap_or(false)
}

/// `Ok` if the current thread may block; else the [`Error::Internal`] that names `what`
/// (`S3 GET backup.db`): a store call on an async task is a bug in lifeboat, reported as
/// one line rather than a stalled runtime or a panic.
pub fn check(what: impl std::fmt::Display) -> Result<()> {
    if may_block() {
        return Ok(());
    }
    Err(Error::Internal(format!(
        "{what} was called on an async task; store calls belong on a blocking thread \
         (store::blocking::offload)"
    )))
}

/// Run blocking work (store calls, file I/O) on the runtime's blocking pool; the future
/// waits for it without holding a worker. `f` starts at once, as `spawn_blocking` does
/// (it may run alongside the caller's async work), so this must be called inside a
/// runtime. A panic in `f` comes back as an [`Error::Internal`].
#[allow(clippy::disallowed_methods)] // the one sanctioned `spawn_blocking`
pub fn offload<T, F>(f: F) -> impl std::future::Future<Output = Result<T>> + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let working = Working::start();
    let task = tokio::task::spawn_blocking(move || {
        let _working = working;
        let _mark = Mark::set();
        f()
    });
    async move {
        task.await
            .map_err(|e| Error::Internal(format!("blocking thread: {e}")))
    }
}

/// [`offload`] on a thread of its own that runs at background priority
/// ([`crate::host::background`]): for a long CPU-bound stage (a backup's pipeline:
/// SHA-256, compression hand-over, the spool) that should take the CPU time the member it
/// streams from leaves idle rather than compete with it. Not a pool thread: a thread can
/// lower its own priority but not raise it back without privilege, and the pool would hand
/// the lowered thread to unrelated work. The thread counts as in flight ([`Working`]) and,
/// being outside the runtime, may make store calls. A panic in `f` comes back as an
/// [`Error::Internal`].
pub fn offload_background<T, F>(
    name: &str,
    f: F,
) -> impl std::future::Future<Output = Result<T>> + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let working = Working::start();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            crate::host::background();
            let out = f();
            drop(working);
            let _ = tx.send(out);
        })
        .map(drop)
        .map_err(|e| Error::Internal(format!("cannot start the {name} thread: {e}")));
    let name = name.to_owned();
    async move {
        spawned?;
        rx.await
            .map_err(|_| Error::Internal(format!("the {name} thread stopped without an answer")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_background_stage_may_block_and_its_panic_is_an_error() {
        let ok = offload_background("test-stage", || check("S3 GET x").is_ok()).await;
        assert!(matches!(ok, Ok(true)));
        let panicked = offload_background("test-stage", || -> u8 { panic!("boom") }).await;
        assert!(matches!(panicked, Err(Error::Internal(m)) if m.contains("test-stage")));
    }

    #[test]
    fn outside_a_runtime_a_thread_may_block() {
        assert!(may_block());
        assert!(check("S3 GET x").is_ok());
    }

    #[test]
    fn an_async_task_may_not_and_an_offloaded_closure_may() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        // The future `block_on` drives, a task on a worker: refused with one line.
        let e = rt.block_on(async { check("S3 GET x") }).unwrap_err();
        assert!(matches!(e, Error::Internal(_)), "{e:?}");
        assert!(e.to_string().contains("S3 GET x"), "{e}");
        let on_task = rt.block_on(async { tokio::spawn(async { may_block() }).await.unwrap() });
        assert!(!on_task);
        // Offloaded: allowed, and the mark goes with the closure.
        let (inside, after) = rt.block_on(async {
            let inside = offload(may_block).await.unwrap();
            (inside, may_block())
        });
        assert!(inside && !after);
        // A plain thread started from an offloaded closure is outside the runtime.
        let nested =
            rt.block_on(async { offload(|| std::thread::spawn(may_block).join().unwrap()).await });
        assert!(nested.unwrap());
        // A panic comes back as an error, not an abort.
        let p = rt.block_on(async { offload(|| -> u8 { panic!("boom") }).await });
        assert!(matches!(p, Err(Error::Internal(_))));
    }

    /// Offloaded work counts as in flight until its closure returns, also when the task
    /// that awaited it was dropped (an aborted daemon task); `settle` waits for it.
    #[test]
    fn offloaded_work_is_in_flight_until_it_ends() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let left = rt.block_on(async move {
            drop(offload(move || wait.recv()));
            // Other tests in this process offload too: this one's closure is at least one.
            assert!(in_flight() >= 1);
            assert!(
                settle(Duration::from_millis(50)).await >= 1,
                "still blocked"
            );
            go.send(()).unwrap();
            settle(Duration::from_secs(30)).await
        });
        let _ = left;
        let held = Working::start();
        assert!(in_flight() >= 1);
        drop(held);
    }
}
