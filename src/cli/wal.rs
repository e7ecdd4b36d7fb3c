use std::io::Write;
use std::path::PathBuf;

use super::{Global, OutputFormat};
use crate::format::wal::{self, dump};
use crate::member::{self, Dirs, Verdict};
use crate::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the decoded records of a member's WAL, one per line.
    ///
    /// Each line: file:offset, record number in the file, record type, and for entries the
    /// term, index and what the request does (put, delete, txn, lease grant/revoke,
    /// compaction, conf changes with the member JSON). A damaged record is reported where etcd
    /// would stop; records after it are still shown, marked `salvaged`. The log gets the same
    /// verdict as `check-member` gives it (printed on stderr when not healthy).
    /// Exit status: 3 when that verdict is corrupt-wal or corrupt-snap; 1 when the dir is
    /// missing or unreadable; otherwise 0 (a torn tail, which etcd cuts by itself, included).
    Dump(DumpArgs),
}

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Member data dir (etcd's --data-dir), a `member` dir, or a WAL dir itself.
    #[arg(value_name = "DATA_DIR")]
    data_dir: PathBuf,
    /// WAL directory when it is not DATA_DIR/member/wal (etcd's --wal-dir).
    #[arg(long, value_name = "DIR")]
    wal_dir: Option<PathBuf>,
    /// Only entries with an index of at least N (and the records after the first of them).
    #[arg(long, value_name = "N")]
    from_index: Option<u64>,
    /// Only these kinds (comma-separated): record types (metadata, entry, state, crc,
    /// snapshot), entry types (normal, conf-change, conf-change-v2) or request kinds (put,
    /// delete-range, txn, compaction, lease-grant, lease-revoke, lease-checkpoint, alarm,
    /// member-attr, cluster-version, auth, noop, v2).
    #[arg(long = "type", value_name = "KIND", value_delimiter = ',')]
    types: Vec<String>,
}

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Dump(a) => dump_cmd(a, g),
    }
}

fn dump_cmd(a: DumpArgs, g: &Global) -> anyhow::Result<ExitCode> {
    match dump_inner(a, g) {
        // `lifeboat wal dump | head` is normal use.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::Ok)
        }
        r => r,
    }
}

fn dump_inner(a: DumpArgs, g: &Global) -> anyhow::Result<ExitCode> {
    // The same verdict as check-member on this log (WAL and snap files): it decides the
    // exit status, so both commands agree on the same dir.
    let dirs = Dirs::locate(&a.data_dir, a.wal_dir.as_deref());
    let (report, listing) = match member::check_wal(&dirs) {
        Ok(x) => x,
        Err(r) => {
            let message = r
                .problems
                .first()
                .map_or_else(|| r.headline(), |p| p.message.clone());
            return Err(match r.verdict {
                Verdict::Missing => crate::Error::NotFound(message),
                _ => crate::Error::Failed(message),
            }
            .into());
        }
    };
    let segs = &listing.segments;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let json = g.output == OutputFormat::Json;
    if json {
        writeln!(out, "[")?;
    }
    let mut first_json = true;
    let mut started = a.from_index.is_none();
    let mut salvaging = false;
    let mut dec = wal::Decoder::new(segs).without_tail_scan();
    let emit = |out: &mut dyn Write, d: &dump::Described, first: &mut bool| -> anyhow::Result<()> {
        if json {
            if !*first {
                writeln!(out, ",")?;
            }
            *first = false;
            write!(out, "{}", serde_json::to_string(d)?)?;
        } else {
            let mut line = format!("{}:{} #{} {}", d.file, d.offset, d.record, d.rtype);
            if let Some(t) = d.entry_type {
                line.push_str(&format!(" {t}"));
            }
            if let (Some(t), Some(i)) = (d.term, d.index) {
                line.push_str(&format!(" term={t} index={i}"));
            }
            line.push(' ');
            line.push_str(&d.summary);
            if d.salvaged {
                line.push_str("  [salvaged: etcd stops before this record]");
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    };
    loop {
        let (seg, offset, number, rec) = match dec.next_frame() {
            Ok(Some(f)) => (f.seg, f.offset, f.number, f.record),
            Ok(None) => break,
            Err(f) => {
                let name = segs.get(f.seg).map(|s| s.name.as_str()).unwrap_or("?");
                let verdict = if f.is_unexpected_eof() && f.in_last_file {
                    "torn write: etcd truncates the log here"
                } else if f.is_unexpected_eof() {
                    "unexpected EOF outside the last file: etcd cannot repair"
                } else {
                    "corrupt: etcd refuses to start"
                };
                let d = dump::Described {
                    file: name.to_string(),
                    offset: f.offset,
                    record: f.number,
                    rtype: "damaged",
                    entry_type: None,
                    term: None,
                    index: None,
                    request: None,
                    summary: format!("{} ({verdict})", f.kind),
                    member: None,
                    salvaged: salvaging,
                };
                emit(&mut out, &d, &mut first_json)?;
                salvaging = true;
                dec.skip_failed(&f);
                continue;
            }
        };
        let name = segs.get(seg).map(|s| s.name.as_str()).unwrap_or("?");
        let mut d = dump::describe(name, offset, number, &rec);
        d.salvaged = salvaging;
        if !started {
            match (d.rtype, d.index, a.from_index) {
                ("entry", Some(i), Some(from)) if i >= from => started = true,
                _ => continue,
            }
        }
        if let (Some(from), "entry", Some(i)) = (a.from_index, d.rtype, d.index) {
            if i < from {
                continue;
            }
        }
        if !a.types.is_empty() {
            let kinds = [Some(d.rtype), d.entry_type, d.request];
            if !kinds
                .iter()
                .flatten()
                .any(|k| a.types.iter().any(|t| t == k))
            {
                continue;
            }
        }
        emit(&mut out, &d, &mut first_json)?;
    }
    if json {
        writeln!(out, "\n]")?;
    }
    out.flush()?;
    if report.verdict != Verdict::Healthy {
        eprintln!("lifeboat: {}", report.headline());
    }
    Ok(if report.verdict.is_corrupt() {
        ExitCode::Integrity
    } else {
        ExitCode::Ok
    })
}
