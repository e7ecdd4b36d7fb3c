//! Verdicts on a member's data dir (to be written).
