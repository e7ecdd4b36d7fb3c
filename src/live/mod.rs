//! A running cluster judged: what `lifeboat status` gathers and concludes.
//!
//! * [`gather`]: the survey of `source::etcd`, widened to every member the member list
//!   names, and TCP probes of the peer URLs of members that do not answer.
//! * [`doctor`]: the checks, each finding with the commands to run and the section of
//!   docs/cluster-health.md that explains it. Pure: it judges what was gathered.

pub mod doctor;
pub mod gather;
pub mod remedy;

pub use gather::{gather, probe_peers, PeerProbe};
