//! One writer thread per destination: takes sealed batches from a bounded queue, encodes
//! the destination's segment (its own chain link) and stores it, retrying until it is
//! stored. A slow destination (S3) never holds the watch up until its queue is full.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::catalog::capture::{self, Sealing};
use crate::format::capture::segment::{self, Header};
use crate::format::capture::Record;
use crate::jobs::backup::Destination;
use crate::pipeline::encrypt::ReadBackKey;

/// Sealed segments a destination may have waiting before capture waits for it.
pub const QUEUE: usize = 64;

/// Records sealed together: revisions `[first, last]`. A destination whose chain needs an
/// earlier revision than `first` gets a segment flagged as a gap (those revisions were
/// compacted before capture saw them); one that is ahead gets only what it lacks.
pub struct Batch {
    pub first: i64,
    pub last: i64,
    pub records: Arc<Vec<Record>>,
    pub sealed_ms: i64,
    /// When its seal started (the seal deadline's budget measures from here to the commit).
    pub started: Instant,
    /// Whether its seal asked etcd for `HashKV`.
    pub with_hash: bool,
}

/// Where a destination's chain stands.
pub struct ChainState {
    /// The next revision the destination needs.
    pub next_first: i64,
    /// Digest of its last segment (zeros: a new chain).
    pub prev: [u8; 32],
}

/// What every writer shares with the capture loop.
#[derive(Default)]
pub struct Progress {
    /// Last revision stored in this destination.
    pub durable: AtomicI64,
    /// Bytes of segments stored.
    pub bytes: AtomicU64,
    /// Segments stored.
    pub segments: AtomicU64,
    /// How long stored segments took from their seal's start, with whether the seal asked
    /// for `HashKV`; the capture loop takes them for its seal deadline.
    pub took: std::sync::Mutex<Vec<(Duration, bool)>>,
}

impl Progress {
    /// The durations recorded since the last call.
    pub fn take_took(&self) -> Vec<(Duration, bool)> {
        std::mem::take(&mut *self.took.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Start the writer of `dest`; dropping the sender drains the queue and ends the thread.
pub fn spawn(
    dest: &Destination,
    cluster_id: u64,
    mut chain: ChainState,
    read_back: Arc<ReadBackKey>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
) -> (
    mpsc::Sender<Batch>,
    Arc<Progress>,
    std::thread::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::channel::<Batch>(QUEUE);
    let progress = Arc::new(Progress::default());
    progress
        .durable
        .store(chain.next_first - 1, Ordering::Relaxed);
    let p = Arc::clone(&progress);
    let store = Arc::clone(&dest.store);
    let encryption = dest.encryption.clone();
    let name = dest.name.clone();
    let working = crate::store::blocking::Working::start();
    let h = std::thread::spawn(move || {
        // Its store calls need the runtime: the daemon waits for this thread at shutdown.
        let _working = working;
        while let Some(b) = rx.blocking_recv() {
            if b.last < chain.next_first {
                continue;
            }
            let first = b.first.max(chain.next_first);
            let header = Header {
                cluster_id,
                first,
                last: b.last,
                prev: chain.prev,
                gap: first > chain.next_first,
            };
            let recs: Vec<Record> = b
                .records
                .iter()
                .filter(|r| r.revision() >= first)
                .cloned()
                .collect();
            let encoded = match segment::encode(&header, &recs) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("lifeboat: error: capture to {name}: revisions {first}..{}: cannot encode the segment ({e}); this is a bug, please report it", b.last);
                    continue;
                }
            };
            let digest = segment::digest_of(&encoded);
            let sealing = encryption.as_ref().map(|e| Sealing {
                encryption: e,
                read_back: &read_back,
            });
            let mut attempt = 0u32;
            loop {
                match capture::store_segment(
                    store.as_ref(),
                    &encoded,
                    &header,
                    b.sealed_ms,
                    sealing.as_ref(),
                ) {
                    Ok(stored) => {
                        p.bytes.fetch_add(stored.bytes, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if stopping.load(Ordering::Relaxed) && attempt >= 3 => {
                        eprintln!("lifeboat: error: capture to {name}: revisions {first}..{} not stored at shutdown: {e}; the next capture resumes from revision {}", b.last, chain.next_first);
                        return;
                    }
                    Err(e) => {
                        attempt += 1;
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            eprintln!("lifeboat: warning: capture to {name}: storing revisions {first}..{} failed (attempt {attempt}, retrying; capture goes on while the queue of {QUEUE} segments has room): {e}", b.last);
                        }
                        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
                    }
                }
            }
            {
                let mut took = p.took.lock().unwrap_or_else(|e| e.into_inner());
                if took.len() < 1024 {
                    took.push((b.started.elapsed(), b.with_hash));
                }
            }
            chain.prev = digest;
            chain.next_first = b.last + 1;
            p.durable.store(b.last, Ordering::Relaxed);
            p.segments.fetch_add(1, Ordering::Relaxed);
        }
    });
    (tx, progress, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{capture::list_segments, Keys};
    use crate::format::capture::KeyValue;
    use crate::store::local::LocalStore;
    use crate::store::Store;

    fn put(rev: i64) -> Record {
        Record::Put(KeyValue {
            key: b"k".to_vec(),
            create_revision: 1,
            mod_revision: rev,
            version: rev,
            value: vec![],
            lease: 0,
        })
    }

    /// A destination behind gets every revision, one ahead only what it lacks; a batch
    /// past a compaction is a gap for both, and their links hold.
    #[test]
    fn each_destination_gets_what_its_chain_needs() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for (d, next_first) in dirs.iter().zip([1, 6]) {
            let dest = Destination {
                name: d.path().display().to_string(),
                store: Arc::new(LocalStore::open(d.path(), false).unwrap()),
                encryption: None,
                keys: Keys::none(),
            };
            let chain = ChainState {
                next_first,
                prev: [0; 32],
            };
            let (tx, _, h) = spawn(
                &dest,
                7,
                chain,
                Arc::new(ReadBackKey::generate()),
                Default::default(),
            );
            senders.push(tx);
            threads.push(h);
        }
        for (first, last) in [(1, 10), (20, 25)] {
            let records = Arc::new((first..=last).map(put).collect::<Vec<_>>());
            for tx in &senders {
                tx.blocking_send(Batch {
                    first,
                    last,
                    records: Arc::clone(&records),
                    sealed_ms: 1,
                    started: Instant::now(),
                    with_hash: false,
                })
                .unwrap();
            }
        }
        drop(senders);
        for t in threads {
            t.join().unwrap();
        }
        for (d, first) in dirs.iter().zip([1, 6]) {
            let store = LocalStore::open(d.path(), false).unwrap();
            let segs = list_segments(&store, 7).unwrap();
            assert_eq!(
                segs.iter().map(|s| (s.first, s.last)).collect::<Vec<_>>(),
                vec![(first, 10), (20, 25)]
            );
            let read = |i: usize| {
                let b = zstd::decode_all(&store.get_bytes(&segs[i].name).unwrap()[..]).unwrap();
                segment::decode(&b).unwrap()
            };
            let (a, b) = (read(0), read(1));
            assert!(!a.header.gap && b.header.gap);
            assert_eq!(a.records.len() as i64, 11 - first);
            assert_eq!(b.header.prev, a.digest);
        }
    }
}
