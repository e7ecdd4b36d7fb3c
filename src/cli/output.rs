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

/// Human-readable byte size (binary units), e.g. `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
