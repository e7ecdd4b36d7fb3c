//! Printing helpers shared by the commands.

use serde::Serialize;

/// Print one JSON document on stdout. A closed stdout comes back as an error (not a
/// panic), which the edge ends quietly.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let s = serde_json::to_string_pretty(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")?;
    out.flush()?;
    Ok(())
}

pub use crate::units::human_bytes;
