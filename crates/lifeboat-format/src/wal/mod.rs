//! etcd's write-ahead log (`member/wal/*.wal`, formats §5), read the way etcd 3.5.1 reads it.
//!
//! * [`crate::wire`]: gogo-protobuf-exact wire decoding (what counts as "does not
//!   unmarshal"), shared with the snap and bucket readers.
//! * [`record`]: `walpb.Record` and the raft messages inside it, zero-copy.
//! * [`decode`]: segment files and the frame decoder with etcd's torn-write test; bounded
//!   memory (a 1 MiB window that grows only to one record, at most 10 MiB).
//! * [`scan`]: one pass over all segments collecting facts, then salvage past a failure.
//! * [`open`]: what etcd does with those facts at start-up: reads, repairs or refuses.
//! * [`requests`]: the etcd requests inside entries (`InternalRaftRequest` & co).
//! * [`dump`]: human/JSON description of records (`lifeboat wal dump`).

pub mod decode;
pub mod dump;
#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;
pub mod open;
pub mod record;
pub mod requests;
pub mod scan;
pub mod segment;
pub mod write;
/// The wire reader moved to `format::wire` (shared by every reader); kept here for old paths.
pub use crate::wire;

pub use decode::{list_dir, Decoder, Failure, FailureKind, Segment};
pub use open::{open, valid_snapshots, Opened, Outcome, Start};
pub use scan::{scan, Loc, Scan};
