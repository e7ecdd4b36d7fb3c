//! A running cluster judged: what `lifeboat status` gathers and concludes.
//!
//! * [`mod@gather`]: the survey of `source::etcd`, widened to every member the member list
//!   names, and TCP probes of the peer URLs of members that do not answer.
//! * [`doctor`]: the verdict, each finding with the commands to run and the section of
//!   docs/cluster-health.md that explains it. Pure: it judges what was gathered. Its checks
//!   live in `membership` (who answers, quorum, leader, agreement) and `member_state` (what
//!   each answering member says: lag, quota, alarms) and [`versions`] (which member runs
//!   which release, and whether etcd supports the mix); [`remedy`] writes the commands
//!   with this cluster's values.

pub mod doctor;
mod foreign;
pub mod gather;
mod member_state;
mod membership;
pub mod remedy;
pub mod versions;

pub use gather::{gather, probe_peers, read_quotas, PeerProbe};
