//! Printing helpers shared by the commands.

use serde::Serialize;

/// Print one JSON document on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(value)?;
    println!("{s}");
    Ok(())
}

pub use crate::units::human_bytes;
