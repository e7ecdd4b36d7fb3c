//! Benchmark helper: a native restore of an etcdctl snapshot into N member dirs, the way
//! `restore apply` will call it (one read of the snapshot for all members).
//!
//! `cargo run --release --example native_restore -- SNAPSHOT OUT_DIR N [TOKEN]`
//!
//! Members are m0..m{N-1} with peer URLs http://127.0.0.1:2380+i; their dirs are
//! OUT_DIR/m0 ... The snapshot's SHA-256 trailer is checked while copying.

use std::path::PathBuf;

use lifeboat::io::{FileReader, ReadAt};
use lifeboat::restore::native::{write_member_dirs, MemberSpec, RestoreSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: native_restore SNAPSHOT OUT_DIR N [TOKEN]"
    );
    let snap = PathBuf::from(&args[0]);
    let out = PathBuf::from(&args[1]);
    let n: usize = args[2].parse()?;
    let token = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "etcd-cluster".into());
    let file = FileReader::open(&snap)?;
    let size = file.size();
    anyhow::ensure!(size > 32, "{} is too short for a snapshot", snap.display());
    let mut trailer = [0u8; 32];
    file.read_exact_at(size - 32, &mut trailer)?;
    let db = file.with_size(size - 32);
    let spec = RestoreSpec {
        members: (0..n)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                peer_urls: vec![format!("http://127.0.0.1:{}", 2380 + i)],
            })
            .collect(),
        token,
        bump_revision: None,
        mark_compacted: false,
    };
    let targets: Vec<_> = (0..n)
        .map(|i| (format!("m{i}"), out.join(format!("m{i}")), None))
        .collect();
    for w in write_member_dirs(&db, Some(trailer), &spec, &targets)? {
        println!("{} {:x} {}", w.name, w.member_id, w.data_dir.display());
    }
    Ok(())
}
