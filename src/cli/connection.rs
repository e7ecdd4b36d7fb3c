//! Connection flags (to be written).
