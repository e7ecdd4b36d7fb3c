//! Describing records for `lifeboat wal dump` (to be written).
