//! Where a backup run can fail: the stages the metrics count failures by
//! (`lifeboat_backup_failures_total{stage}`). The jobs own them (they are the run's
//! steps); `metrics` only renders them.

use crate::error::{EtcdErrorKind, StoreErrorKind};
use crate::Error;

/// One step of a backup run, as a bounded metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Stream,
    Verify,
    Store,
    Prune,
}

impl Stage {
    /// Every stage, in the order the metrics list them.
    pub const ALL: [Stage; 5] = [
        Stage::Connect,
        Stage::Stream,
        Stage::Verify,
        Stage::Store,
        Stage::Prune,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Stream => "stream",
            Stage::Verify => "verify",
            Stage::Store => "store",
            Stage::Prune => "prune",
        }
    }

    /// The stage an error belongs to.
    pub fn of(e: &Error) -> Stage {
        match e {
            Error::Etcd { kind, .. } => match kind {
                EtcdErrorKind::Refused
                | EtcdErrorKind::Timeout
                | EtcdErrorKind::Tls
                | EtcdErrorKind::Auth
                | EtcdErrorKind::Permission
                | EtcdErrorKind::Unavailable => Stage::Connect,
                EtcdErrorKind::Stalled | EtcdErrorKind::Broken | EtcdErrorKind::Other => {
                    Stage::Stream
                }
            },
            Error::Integrity { .. } | Error::Corrupt { .. } => Stage::Verify,
            // Connecting is `connect`, for S3 as for etcd.
            Error::Store {
                kind: StoreErrorKind::Unreachable,
                ..
            } => Stage::Connect,
            Error::Store { .. } | Error::Io { .. } => Stage::Store,
            _ => Stage::Stream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_store_connection_is_the_connect_stage() {
        use crate::error::StoreErrorKind as K;
        let of = |e| Stage::of(&e).as_str();
        assert_eq!(of(Error::store("s3://b", K::Unreachable, "x")), "connect");
        assert_eq!(of(Error::store("s3://b", K::Timeout, "x")), "store");
        assert_eq!(of(Error::store("/d", K::Other, "x")), "store");
    }
}
