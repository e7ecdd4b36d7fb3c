//! Benchmark helper: fill an etcd cluster with N keys of about S bytes, fast.
//!
//! `cargo run --release --example fill -- ENDPOINT COUNT VALUE_SIZE [PREFIX]`
//!
//! Values are half pseudo-random text, half repetitive (JSON-like), so they compress about
//! as well as real Kubernetes objects do, neither trivially nor not at all. Writes go in
//! transactions of 100 puts with 32 in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::{Client, Txn, TxnOp};

#[path = "common/value.rs"]
mod common_value;
use common_value::value;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fill ENDPOINT COUNT VALUE_SIZE [PREFIX]");
        std::process::exit(2);
    }
    let endpoint = args[1].clone();
    let count: u64 = args[2].parse()?;
    let size: usize = args[3].parse()?;
    let prefix = args.get(4).cloned().unwrap_or_else(|| "/bench/".into());
    let client = Client::connect([endpoint], None).await?;
    let next = Arc::new(AtomicU64::new(0));
    let batch = 100u64;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let mut c = client.clone();
        let next = Arc::clone(&next);
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= count {
                    return Ok::<(), etcd_client::Error>(());
                }
                let end = (start + batch).min(count);
                let ops: Vec<TxnOp> = (start..end)
                    .map(|i| TxnOp::put(format!("{prefix}{i:010}"), value(i, size), None))
                    .collect();
                c.txn(Txn::new().and_then(ops)).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
