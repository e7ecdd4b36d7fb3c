//! Benchmark helper: the member's send rate, the floor under any backup. Streams a
//! snapshot from ENDPOINT and discards it (counting bytes), so the client's own work is
//! as small as it can be: what `scripts/bench.sh` compares backups against.
//!
//! `cargo run --release --example stream_floor -- ENDPOINT`

use etcd_client::Client;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .ok_or("usage: stream_floor ENDPOINT")?;
    let mut client = Client::connect([endpoint], None).await?;
    let mut stream = client.snapshot().await?;
    let mut bytes = 0u64;
    while let Some(msg) = stream.message().await? {
        bytes += msg.blob().len() as u64;
    }
    println!("{bytes}");
    Ok(())
}
