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
    let mut out = Out {
        w: std::io::BufWriter::new(stdout.lock()),
        json: g.output == OutputFormat::Json,
        first: true,
    };
    out.open()?;
    let mut filter = Filter::new(&a);
    let mut salvaging = false;
    let mut dec = wal::Decoder::new(segs).without_tail_scan();
    loop {
        let name = |seg: usize| segs.get(seg).map_or("?", |s| s.name.as_str());
        match dec.next_frame() {
            Ok(Some(f)) => {
                let mut d = dump::describe(name(f.seg), f.offset, f.number, &f.record);
                d.salvaged = salvaging;
                if filter.wants(&d) {
                    out.record(&d)?;
                }
            }
            Ok(None) => break,
            Err(f) => {
                out.record(&dump::describe_failure(name(f.seg), &f, salvaging))?;
                salvaging = true;
                dec.skip_failed(&f);
            }
        }
    }
    out.close()?;
    if report.verdict != Verdict::Healthy {
        eprintln!("lifeboat: {}", report.headline());
    }
    Ok(if report.verdict.is_corrupt() {
        ExitCode::Integrity
    } else {
        ExitCode::Ok
    })
}

/// `--from-index` and `--type`.
struct Filter<'a> {
    from_index: Option<u64>,
    types: &'a [String],
    started: bool,
}

impl<'a> Filter<'a> {
    fn new(a: &'a DumpArgs) -> Self {
        Filter {
            from_index: a.from_index,
            types: &a.types,
            started: a.from_index.is_none(),
        }
    }

    /// Records from the first entry at `--from-index` on (earlier entries after it, from
    /// an overwritten tail, are left out), of the kinds asked for.
    fn wants(&mut self, d: &dump::Described) -> bool {
        if !self.started {
            match (d.rtype, d.index, self.from_index) {
                ("entry", Some(i), Some(from)) if i >= from => self.started = true,
                _ => return false,
            }
        }
        if let (Some(from), "entry", Some(i)) = (self.from_index, d.rtype, d.index) {
            if i < from {
                return false;
            }
        }
        if self.types.is_empty() {
            return true;
        }
        [Some(d.rtype), d.entry_type, d.request]
            .iter()
            .flatten()
            .any(|k| self.types.iter().any(|t| t == k))
    }
}

/// Text lines, or one JSON array written as it goes (a WAL can be larger than memory).
struct Out<W: Write> {
    w: W,
    json: bool,
    first: bool,
}

impl<W: Write> Out<W> {
    fn open(&mut self) -> std::io::Result<()> {
        if self.json {
            writeln!(self.w, "[")?;
        }
        Ok(())
    }

    fn record(&mut self, d: &dump::Described) -> anyhow::Result<()> {
        if self.json {
            if !self.first {
                writeln!(self.w, ",")?;
            }
            self.first = false;
            write!(self.w, "{}", serde_json::to_string(d)?)?;
        } else {
            writeln!(self.w, "{}", dump::text_line(d))?;
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        if self.json {
            writeln!(self.w, "\n]")?;
        }
        self.w.flush()
    }
}
