//! Point-in-time recovery: the changes `lifeboat capture` records between full backups, and
//! that a restore to a revision replays on top of one.
//!
//! These are the records of a capture segment once decoded; the segment's byte layout lives
//! beside them. A segment holds records in the order etcd applied them: by revision, and
//! inside one revision in sub-revision order (a transaction's changes keep their order; the
//! n-th `Put`/`Delete` of a revision has sub-revision n, counting from 0).

#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;
pub mod segment;

/// `mvccpb.KeyValue`, owned: a key's state after a put, as a watch delivers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A put (a watch PUT event); its revision is `kv.mod_revision`.
    Put(KeyValue),
    /// A delete (a watch DELETE event: its kv's key and mod_revision). etcd writes a
    /// tombstone for it at `revision`.
    Delete { key: Vec<u8>, revision: i64 },
    /// A lease that exists from `revision` on (found by polling: granted at or before it).
    LeaseGrant { id: i64, ttl: i64, revision: i64 },
    /// A lease that is gone by `revision` (its attached keys' deletes are `Delete` records
    /// at the revision etcd revoked it).
    LeaseRevoke { id: i64, revision: i64 },
    /// The cluster was compacted at `compact_revision`; seen by `revision`.
    Compact {
        compact_revision: i64,
        revision: i64,
    },
    /// Wall-clock mark: by `unix_ms` (capture's clock, UTC milliseconds) the cluster had
    /// reached `revision` and capture had received every change up to it. `--to-time T`
    /// restores to the revision of the newest mark at or before T.
    Clock { revision: i64, unix_ms: i64 },
    /// The live cluster's `HashKV` at `revision`, with the compaction revision it answered
    /// with: what a restore to `revision` must reproduce.
    LiveHash {
        revision: i64,
        hash: u32,
        compact_revision: i64,
    },
}

impl Record {
    /// The revision the record belongs at in the stream.
    pub fn revision(&self) -> i64 {
        match self {
            Record::Put(kv) => kv.mod_revision,
            Record::Delete { revision, .. }
            | Record::LeaseGrant { revision, .. }
            | Record::LeaseRevoke { revision, .. }
            | Record::Compact { revision, .. }
            | Record::Clock { revision, .. }
            | Record::LiveHash { revision, .. } => *revision,
        }
    }
}
