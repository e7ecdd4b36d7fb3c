//! Benchmark helper for point-in-time recovery (scripts/bench-pitr.sh).
//!
//! `pitr_load write ENDPOINT RATE SECONDS VALUE_SIZE KEYS [ACKS_FILE]`
//!   puts RATE values per second for SECONDS (keys `/pitr/<n % KEYS>`, so most puts update
//!   a key, as Kubernetes objects are updated), paced per 10 ms tick with up to 64 in
//!   flight; prints `writes=N seconds=S first_revision=A last_revision=B last_ack_unix_ms=T`.
//!   With ACKS_FILE, about 4 puts a second (and the last) are written to it as
//!   `REVISION ACK_UNIX_MS` lines: the RPO samples.
//!
//! `pitr_load gardener-size ENDPOINT FROM_REV TO_REV`
//!   watches revisions FROM_REV..=TO_REV and sizes them as the Gardener sidecar stores
//!   delta snapshots (a JSON array of `{"etcdEvent": <clientv3.Event as JSON>, "time": ...}`,
//!   keys and values base64 by encoding/json), plain and zstd-3 compressed: the reference
//!   for the segment-size target. Prints `events=N json_bytes=J json_zstd3_bytes=Z`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, EventType, WatchOptions};
use lifeboat::offline::get::base64;

#[path = "common/value.rs"]
mod common_value;
use common_value::value;

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn write(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (endpoint, rate, seconds, size, keys, acks_file) = match args {
        [e, r, s, v, k] => (e, r, s, v, k, None),
        [e, r, s, v, k, a] => (e, r, s, v, k, Some(a)),
        _ => {
            return Err(
                "usage: pitr_load write ENDPOINT RATE SECONDS VALUE_SIZE KEYS [ACKS_FILE]".into(),
            )
        }
    };
    let rate: u64 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    let size: usize = size.parse()?;
    let keys: u64 = keys.parse()?;
    let client = Client::connect([endpoint.as_str()], None).await?;
    let total = rate * seconds;
    let sent = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicI64::new(i64::MAX));
    let last = Arc::new(AtomicI64::new(0));
    let last_ack = Arc::new(AtomicI64::new(0));
    let acks = Arc::new(std::sync::Mutex::new(Vec::<(i64, i64)>::new()));
    let sample_every = (rate / 4).max(1);
    let inflight = Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut tasks = Vec::new();
    while sent.load(Ordering::Relaxed) < total {
        tick.tick().await;
        // Puts due by now, at RATE per second since the start.
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent.load(Ordering::Relaxed) < due {
            let i = sent.fetch_add(1, Ordering::Relaxed);
            let permit = Arc::clone(&inflight).acquire_owned().await?;
            let mut c = client.clone();
            let (first, last, last_ack) = (first.clone(), last.clone(), last_ack.clone());
            let acks = Arc::clone(&acks);
            tasks.push(tokio::spawn(async move {
                let r = c
                    .put(format!("/pitr/{:08}", i % keys), value(i, size), None)
                    .await;
                drop(permit);
                let rev = r?.header().map_or(0, |h| h.revision());
                let acked = unix_ms();
                first.fetch_min(rev, Ordering::Relaxed);
                if last.fetch_max(rev, Ordering::Relaxed) < rev {
                    last_ack.fetch_max(acked, Ordering::Relaxed);
                }
                if i.is_multiple_of(sample_every) {
                    if let Ok(mut a) = acks.lock() {
                        a.push((rev, acked));
                    }
                }
                Ok::<(), etcd_client::Error>(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    if let Some(path) = acks_file {
        let mut a = acks.lock().map_err(|_| "acks lock poisoned")?.clone();
        a.push((
            last.load(Ordering::Relaxed),
            last_ack.load(Ordering::Relaxed),
        ));
        a.sort_unstable();
        let lines: String = a.iter().map(|(r, t)| format!("{r} {t}\n")).collect();
        std::fs::write(path, lines)?;
    }
    println!(
        "writes={total} seconds={:.2} first_revision={} last_revision={} last_ack_unix_ms={}",
        start.elapsed().as_secs_f64(),
        first.load(Ordering::Relaxed),
        last.load(Ordering::Relaxed),
        last_ack.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One event as Go's encoding/json writes a Gardener delta entry: gogo's json tags
/// (`omitempty`), []byte as base64, PUT (0) omitted, the wrapper's time in RFC 3339 nano.
fn gardener_json(e: &etcd_client::Event, out: &mut String) {
    use std::fmt::Write;
    out.push_str(r#"{"etcdEvent":{"#);
    if e.event_type() == EventType::Delete {
        out.push_str(r#""type":1,"#);
    }
    out.push_str(r#""kv":{"#);
    let mut fields = Vec::new();
    if let Some(kv) = e.kv() {
        if !kv.key().is_empty() {
            fields.push(format!(r#""key":"{}""#, base64(kv.key())));
        }
        for (name, v) in [
            ("create_revision", kv.create_revision()),
            ("mod_revision", kv.mod_revision()),
            ("version", kv.version()),
        ] {
            if v != 0 {
                fields.push(format!(r#""{name}":{v}"#));
            }
        }
        if !kv.value().is_empty() {
            fields.push(format!(r#""value":"{}""#, base64(kv.value())));
        }
        if kv.lease() != 0 {
            fields.push(format!(r#""lease":{}"#, kv.lease()));
        }
    }
    out.push_str(&fields.join(","));
    let _ = write!(out, r#"}}}},"time":"2026-12-06T01:02:03.123456789Z"}}"#);
}

async fn gardener_size(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [endpoint, from, to] = args else {
        return Err("usage: pitr_load gardener-size ENDPOINT FROM_REV TO_REV".into());
    };
    let (from, to): (i64, i64) = (from.parse()?, to.parse()?);
    let mut client = Client::connect([endpoint.as_str()], None).await?;
    let mut stream = client
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_from_key()
                    .with_start_revision(from),
            ),
        )
        .await?;
    let mut json = String::from("[");
    let mut events = 0u64;
    'outer: while let Some(resp) = stream.message().await? {
        for e in resp.events() {
            let rev = e.kv().map_or(0, |kv| kv.mod_revision());
            if rev > to {
                break 'outer;
            }
            if events > 0 {
                json.push(',');
            }
            gardener_json(e, &mut json);
            events += 1;
        }
        if resp
            .events()
            .last()
            .and_then(|e| e.kv())
            .is_some_and(|kv| kv.mod_revision() >= to)
        {
            break;
        }
    }
    json.push(']');
    let z = zstd::encode_all(json.as_bytes(), 3)?;
    println!(
        "events={events} json_bytes={} json_zstd3_bytes={}",
        json.len(),
        z.len()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("write") => write(&args[1..]).await,
        Some("gardener-size") => gardener_size(&args[1..]).await,
        _ => Err("usage: pitr_load write ... | gardener-size ...".into()),
    };
    if let Err(e) = r {
        eprintln!("pitr_load: {e}");
        std::process::exit(1);
    }
}
