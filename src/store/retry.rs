//! A store wrapper that retries transient errors (timeouts, throttling, resets) with
//! exponential back-off, for every backend alike; other kinds fail at once, since
//! retrying a permission error or a missing object only delays the message.
//!
//! Writes are retried whole where that is safe: `create` (nothing written yet),
//! `put_bytes` (the object is small and invisible until committed). A streaming writer
//! that fails mid-way is the caller's to restart.

use std::io::Read;
use std::time::Duration;

use super::{ObjectInfo, ObjectWriter, Store, StoreLock};
use crate::io::ReadAt;
use crate::Result;

/// Retry policy: `attempts` tries in all, waiting `base`, `2 × base`, ... (at most `max`)
/// between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

pub struct RetryStore<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: Store> RetryStore<S> {
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        RetryStore { inner, policy }
    }

    fn run<T>(&self, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut wait = self.policy.base;
        let mut tried = 0u32;
        loop {
            tried += 1;
            match f() {
                Err(e) if e.is_transient() && tried < self.policy.attempts.max(1) => {
                    tracing::warn!(
                        "{what} on {}: {e}; retrying in {wait:?} (try {tried} of {})",
                        self.inner.location(),
                        self.policy.attempts
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(self.policy.max);
                }
                other => return other,
            }
        }
    }
}

impl<S: Store> Store for RetryStore<S> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn lock_key(&self) -> String {
        self.inner.lock_key()
    }
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.run("create", || self.inner.create(name))
    }
    fn create_sized(&self, name: &str, size_hint: Option<u64>) -> Result<Box<dyn ObjectWriter>> {
        self.run("create", || self.inner.create_sized(name, size_hint))
    }
    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>> {
        self.run("open", || self.inner.open(name))
    }
    fn load(&self, name: &str, offset: u64, len: Option<u64>) -> Result<Box<dyn Read + Send>> {
        self.run("load", || self.inner.load(name, offset, len))
    }
    fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.run("stat", || self.inner.stat(name))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.run("list", || self.inner.list(prefix))
    }
    fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
        self.run("list", || self.inner.list_after(prefix, after))
    }
    fn list_skipping(&self, skip: &str) -> Result<Vec<ObjectInfo>> {
        self.run("list", || self.inner.list_skipping(skip))
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.run("remove", || self.inner.remove(name))
    }
    fn lock(&self, wait: Duration) -> Result<Box<dyn StoreLock>> {
        self.run("lock", || self.inner.lock(wait))
    }
    fn clean_partials(&self) -> Result<Vec<String>> {
        self.run("clean-up", || self.inner.clean_partials())
    }
    fn abort_stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
        self.run("abort stale uploads", || {
            self.inner.abort_stale_uploads(older_than)
        })
    }
    fn retained_until(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.run("stat", || self.inner.retained_until(name))
    }
    fn partials(&self) -> Result<Vec<String>> {
        self.run("list", || self.inner.partials())
    }
    fn stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
        self.run("list uploads", || self.inner.stale_uploads(older_than))
    }
    fn put_bytes(&self, name: &str, data: &[u8]) -> Result<()> {
        self.run("write", || self.inner.put_bytes(name, data))
    }
    fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        self.run("read", || self.inner.get_bytes(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreErrorKind;
    use crate::store::local::LocalStore;
    use crate::Error;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A local store whose `stat` fails with `kind` the first `fail` times.
    struct Flaky {
        inner: LocalStore,
        fail: u32,
        kind: StoreErrorKind,
        calls: AtomicU32,
    }

    impl Store for Flaky {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
            self.inner.create(name)
        }
        fn open(&self, name: &str) -> Result<Box<dyn ReadAt>> {
            self.inner.open(name)
        }
        fn load(&self, n: &str, o: u64, l: Option<u64>) -> Result<Box<dyn Read + Send>> {
            self.inner.load(n, o, l)
        }
        fn stat(&self, name: &str) -> Result<Option<u64>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                return Err(Error::store(self.location(), self.kind, "flaky"));
            }
            self.inner.stat(name)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            self.inner.list(prefix)
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.inner.remove(name)
        }
        fn lock(&self, wait: Duration) -> Result<Box<dyn StoreLock>> {
            self.inner.lock(wait)
        }
        fn clean_partials(&self) -> Result<Vec<String>> {
            self.inner.clean_partials()
        }
    }

    fn flaky(d: &std::path::Path, fail: u32, kind: StoreErrorKind) -> RetryStore<Flaky> {
        RetryStore::new(
            Flaky {
                inner: LocalStore::open(d, false).unwrap(),
                fail,
                kind,
                calls: AtomicU32::new(0),
            },
            RetryPolicy {
                attempts: 3,
                base: Duration::ZERO,
                max: Duration::ZERO,
            },
        )
    }

    #[test]
    fn transient_errors_are_retried_up_to_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let s = flaky(d.path(), 2, StoreErrorKind::Transient);
        assert_eq!(s.stat("x").unwrap(), None);
        assert_eq!(s.inner.calls.load(Ordering::SeqCst), 3);
        let s = flaky(d.path(), 5, StoreErrorKind::Transient);
        assert!(s.stat("x").is_err());
        assert_eq!(
            s.inner.calls.load(Ordering::SeqCst),
            3,
            "gives up after 3 tries"
        );
    }

    #[test]
    fn other_errors_fail_at_once() {
        let d = tempfile::tempdir().unwrap();
        for kind in [StoreErrorKind::Permission, StoreErrorKind::NotFound] {
            let s = flaky(d.path(), 5, kind);
            assert!(s.stat("x").is_err());
            assert_eq!(s.inner.calls.load(Ordering::SeqCst), 1, "{kind:?}");
        }
    }
}
