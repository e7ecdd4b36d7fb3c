//! Metrics, rendered with `prometheus-client`: OpenMetrics text for the daemon's `/metrics`,
//! the Prometheus text format 0.0.4 for node_exporter's textfile collector (one-shot runs
//! from cron or a systemd timer, and the daemon's `[metrics] textfile`).
//!
//! Label sets are bounded: `destination` is the configured destination (its URL as given),
//! `stage` one of [`STAGES`]; no error text is ever a label. A one-shot process has no
//! memory, so the counters (`*_total`) are carried forward from the previous textfile, and
//! the gauges of the last success come from the destination itself (its newest backup),
//! which is the truth even when the previous file was lost.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use crate::catalog::Manifest;
use crate::jobs::Stage;
use crate::{Error, Result};

/// Where a backup can fail, for `lifeboat_backup_failures_total{stage}`: the labels of
/// [`Stage`], which the jobs own.
pub const STAGES: [&str; 5] = [
    Stage::ALL[0].as_str(),
    Stage::ALL[1].as_str(),
    Stage::ALL[2].as_str(),
    Stage::ALL[3].as_str(),
    Stage::ALL[4].as_str(),
];

/// What one run knows about one destination.
#[derive(Debug, Clone, Default)]
pub struct DestinationMetrics {
    pub destination: String,
    pub last_attempt: f64,
    /// The newest backup in the destination (after this run), if it could be listed.
    pub newest: Option<Manifest>,
    /// Complete backups in the destination, if it could be listed.
    pub backups: Option<u64>,
    pub failing_verify: Option<u64>,
    /// The newest passing verification (scrub) in the destination (Unix time).
    pub verify_last_success: Option<f64>,
    /// This run's failure, if any.
    pub failed_stage: Option<&'static str>,
    pub pruned: u64,
}

/// What is known of the cluster itself (the daemon asks etcd; a one-shot leaves it empty).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClusterMetrics {
    /// The backend quota (`--quota-backend-bytes`): from etcd's /metrics, else the config.
    pub quota_bytes: Option<u64>,
}

/// What the destination says after a run: its newest backup, how many there are, how many
/// failed their last scrub. A destination that cannot be listed leaves those unknown (the
/// series are left out rather than reported as zero).
pub fn collect(
    store: &dyn crate::store::Store,
    destination: &str,
    last_attempt: f64,
    failed_stage: Option<&'static str>,
    pruned: u64,
) -> DestinationMetrics {
    let mut d = DestinationMetrics {
        destination: destination.to_string(),
        last_attempt,
        failed_stage,
        pruned,
        ..Default::default()
    };
    if let Ok((all, _)) = crate::catalog::list(store) {
        d.backups = Some(all.len() as u64);
        if let Ok(s) = crate::jobs::scrub::summary(store, &all) {
            d.failing_verify = Some(s.failing as u64);
            d.verify_last_success = s.last_success;
        }
        d.newest = all.into_iter().next();
    }
    d
}

/// Collect every destination's metrics after a run and write the textfile, carrying the
/// counters of the previous one forward.
pub fn write_run(
    path: &Path,
    dests: &[(&crate::jobs::backup::Destination, Option<&'static str>, u64)],
    attempt: f64,
) -> Result<()> {
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    let m: Vec<_> = dests
        .iter()
        .map(|(d, stage, pruned)| collect(d.store.as_ref(), &d.name, attempt, *stage, *pruned))
        .collect();
    let cluster = ClusterMetrics::default();
    let text = render(&m, &cluster, &previous_counters(&previous));
    write_textfile(path, &to_text_format(&text))
}

fn unix_of(rfc3339: &str) -> Option<f64> {
    Some(crate::timestamp::Timestamp::parse(rfc3339)?.unix_seconds())
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counter values of a previous textfile, by `name{labels}`; unreadable lines are skipped
/// (the file is ours, but a damaged one must not stop a backup).
pub fn previous_counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            key.contains("_total")
                .then(|| Some((key.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

/// Carry `lifeboat_verify_last_success_timestamp_seconds` forward from the previous
/// render: it is when a verification last passed, and stays so when retention removes the
/// backup it was about (or the destination cannot be listed for a while).
pub fn carry_verify_success(previous: &str, dests: &mut [DestinationMetrics]) {
    for d in dests {
        let key = series_key(
            "lifeboat_verify_last_success_timestamp_seconds",
            &vec![("destination", esc(&d.destination))],
        );
        let before = previous.lines().find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.parse::<f64>().ok())?
        });
        if let Some(b) = before {
            d.verify_last_success = Some(d.verify_last_success.map_or(b, |c| c.max(b)));
        }
    }
}

/// Label pairs of one series; values are escaped here (prometheus-client writes them as
/// given).
type Labels = Vec<(&'static str, String)>;

/// `name{k="v",...}`: how a series is keyed when counters are carried forward.
fn series_key(name: &str, labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if inner.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", inner.join(","))
    }
}

/// The whole exposition for this run (OpenMetrics text, through `prometheus-client`; the
/// Prometheus server and node_exporter's textfile collector both read it).
pub fn render(
    dests: &[DestinationMetrics],
    cluster: &ClusterMetrics,
    previous: &BTreeMap<String, f64>,
) -> String {
    use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
    use std::sync::atomic::AtomicU64;
    let mut registry = prometheus_client::registry::Registry::default();
    // prometheus-client adds the final full stop to help texts, and `_total` to counters.
    let help = |h: &str| h.trim_end_matches('.').to_string();
    // Families without a series are left out: unknown is not zero.
    let mut family = |name: &str, kind: &str, text: &str, rows: Vec<(Labels, f64)>| {
        if rows.is_empty() {
            return;
        }
        if kind == "counter" {
            let f = Family::<Labels, Counter<f64, AtomicU64>>::default();
            for (l, v) in rows {
                f.get_or_create(&l).inc_by(v);
            }
            registry.register(name.trim_end_matches("_total"), help(text), f);
        } else if rows.iter().all(|(l, _)| l.is_empty()) {
            // A cluster-wide gauge: one series, no labels (a family would print `{}`).
            let g = Gauge::<f64, AtomicU64>::default();
            for (_, v) in rows {
                g.set(v);
            }
            registry.register(name, help(text), g);
        } else {
            let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
            for (l, v) in rows {
                f.get_or_create(&l).set(v);
            }
            registry.register(name, help(text), f);
        }
    };
    let label = |d: &DestinationMetrics| -> Labels { vec![("destination", esc(&d.destination))] };
    let gauge = |f: &dyn Fn(&DestinationMetrics) -> Option<f64>| -> Vec<(Labels, f64)> {
        dests
            .iter()
            .filter_map(|d| Some((label(d), f(d)?)))
            .collect()
    };
    let newest = |d: &DestinationMetrics| d.newest.clone();
    family(
        "lifeboat_backup_last_success_timestamp_seconds",
        "gauge",
        "When the newest complete backup in the destination finished (Unix time).",
        gauge(&|d| newest(d).and_then(|m| unix_of(&m.completed_at))),
    );
    family(
        "lifeboat_backup_last_attempt_timestamp_seconds",
        "gauge",
        "When the last backup attempt started (Unix time).",
        gauge(&|d| (d.last_attempt > 0.0).then_some(d.last_attempt)),
    );
    family(
        "lifeboat_backup_duration_seconds",
        "gauge",
        "How long the newest complete backup took.",
        gauge(&|d| newest(d).map(|m| m.duration_seconds)),
    );
    family(
        "lifeboat_backup_db_bytes",
        "gauge",
        "Database size of the newest complete backup.",
        gauge(&|d| newest(d).map(|m| m.db_size as f64)),
    );
    family(
        "lifeboat_backup_stored_bytes",
        "gauge",
        "Stored (compressed) size of the newest complete backup.",
        gauge(&|d| newest(d).map(|m| m.stored_size as f64)),
    );
    family(
        "lifeboat_backup_revision",
        "gauge",
        "etcd revision of the newest complete backup.",
        gauge(&|d| newest(d).map(|m| m.revision as f64)),
    );
    family(
        "lifeboat_cluster_db_size_bytes",
        "gauge",
        "Largest member database size seen at the newest backup.",
        gauge(&|d| {
            newest(d)
                .and_then(|m| m.cluster_status.iter().map(|s| s.db_size).max())
                .map(|v| v as f64)
        }),
    );
    family(
        "lifeboat_cluster_quota_bytes",
        "gauge",
        "The cluster's backend quota (etcd --quota-backend-bytes): NOSPACE when a db reaches it.",
        cluster
            .quota_bytes
            .map(|q| (Labels::new(), q as f64))
            .into_iter()
            .collect(),
    );
    family(
        "lifeboat_backups",
        "gauge",
        "Complete backups in the destination.",
        gauge(&|d| d.backups.map(|v| v as f64)),
    );
    family(
        "lifeboat_backups_failing_verify",
        "gauge",
        "Backups whose last verification (scrub) failed.",
        gauge(&|d| d.failing_verify.map(|v| v as f64)),
    );
    family(
        "lifeboat_verify_last_success_timestamp_seconds",
        "gauge",
        "When a backup in the destination last passed verification (scrub; Unix time).",
        gauge(&|d| d.verify_last_success),
    );
    let counter = |name: &str, labels: Labels, add: f64| {
        let before = previous
            .get(&series_key(name, &labels))
            .copied()
            .unwrap_or(0.0);
        (labels, before + add)
    };
    let mut failures = Vec::new();
    for d in dests {
        for s in STAGES {
            let add = if d.failed_stage == Some(s) { 1.0 } else { 0.0 };
            let mut labels = label(d);
            labels.push(("stage", s.to_string()));
            failures.push(counter("lifeboat_backup_failures_total", labels, add));
        }
    }
    family(
        "lifeboat_backup_failures_total",
        "counter",
        "Failed backup runs, by the stage that failed.",
        failures,
    );
    let pruned = dests
        .iter()
        .map(|d| counter("lifeboat_prune_deleted_total", label(d), d.pruned as f64))
        .collect();
    family(
        "lifeboat_prune_deleted_total",
        "counter",
        "Backups removed by retention.",
        pruned,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The same exposition in the Prometheus text format 0.0.4, for node_exporter's textfile
/// collector, whose parser predates OpenMetrics: a counter family is named with its
/// `_total` (OpenMetrics names it without), and there is no `# EOF`.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Write `text` to `path` atomically: a temp file in the same directory, fsync, rename, so
/// the collector never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-metrics")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // node_exporter runs as another user: the file must be readable by it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_success_keeps_its_last_value() {
        let mut d = vec![DestinationMetrics {
            destination: "/b".into(),
            ..Default::default()
        }];
        let previous =
            "lifeboat_verify_last_success_timestamp_seconds{destination=\"/b\"} 1700000000.5\n";
        carry_verify_success(previous, &mut d);
        assert_eq!(d[0].verify_last_success, Some(1_700_000_000.5));
        d[0].verify_last_success = Some(1_800_000_000.0);
        carry_verify_success(previous, &mut d);
        assert_eq!(d[0].verify_last_success, Some(1_800_000_000.0));
    }

    #[test]
    fn counters_carry_forward_and_labels_are_escaped() {
        let d = DestinationMetrics {
            destination: "/var/\"b\"".into(),
            last_attempt: 1.5,
            failed_stage: Some("store"),
            pruned: 2,
            ..Default::default()
        };
        let cluster = ClusterMetrics {
            quota_bytes: Some(2 << 30),
        };
        let first = render(std::slice::from_ref(&d), &cluster, &BTreeMap::new());
        let second = render(&[d], &cluster, &previous_counters(&first));
        assert!(
            second.contains("\nlifeboat_cluster_quota_bytes 2147483648.0\n"),
            "{second}"
        );
        assert!(second.ends_with("# EOF\n"), "{second}");
        assert!(second.contains(
            "lifeboat_backup_failures_total{destination=\"/var/\\\"b\\\"\",stage=\"store\"} 2.0\n"
        ));
        assert!(
            second.contains("lifeboat_prune_deleted_total{destination=\"/var/\\\"b\\\"\"} 4.0\n")
        );
        assert!(second.contains(
            "lifeboat_backup_last_attempt_timestamp_seconds{destination=\"/var/\\\"b\\\"\"} 1.5\n"
        ));
        assert!(!second.contains("last_success_timestamp_seconds{"));
        let text = to_text_format(&second);
        assert!(
            text.contains("# TYPE lifeboat_prune_deleted_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP lifeboat_backup_failures_total Failed"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE lifeboat_backup_last_attempt_timestamp_seconds gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(previous_counters(&text), previous_counters(&second));
    }
}
