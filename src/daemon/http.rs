//! The daemon's HTTP listener: `/metrics` (OpenMetrics text from `prometheus-client`, the
//! same families as the textfile) and `/healthz` (200 while the last success is younger than 2 × the interval +
//! the shutdown grace, else 503 with a one-line reason). Both answer from state the
//! scheduler updates after each slot: a scrape never touches etcd or a store.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

/// What the listener serves, updated by the scheduler.
#[derive(Debug, Default)]
pub struct Shared {
    pub metrics: String,
    /// Unix time of the newest backup's completion across destinations, if any.
    pub last_success: Option<f64>,
    /// What the daemon last learnt of the cluster (its quota).
    pub cluster: crate::metrics::ClusterMetrics,
    /// Unix time of the last backup attempt (0: none since start).
    pub last_attempt: f64,
    /// How old the last success may be before /healthz says 503, in seconds.
    pub max_age: f64,
    /// `[capture]` running in this daemon (the leader's, with `when = "leader"`).
    pub capture: Option<std::sync::Arc<crate::jobs::capture::CaptureMetrics>>,
    /// `[capture] max_lag`, seconds: /healthz says 503 beyond it.
    pub capture_max_lag: f64,
}

pub type State = Arc<Mutex<Shared>>;

fn health(s: &Shared, now: f64) -> (StatusCode, String) {
    if let Some(m) = &s.capture {
        let lag = m.lag_seconds();
        if lag > s.capture_max_lag {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "unhealthy: capture lags {lag:.0}s behind etcd ({} revisions; limit {:.0}s: [capture] max_lag)\n",
                    m.lag_revisions(),
                    s.capture_max_lag
                ),
            );
        }
    }
    match s.last_success {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: no successful backup yet\n".into(),
        ),
        Some(t) if now - t > s.max_age => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: last successful backup {:.0}s ago (limit {:.0}s: 2 x schedule + grace)\n",
                now - t,
                s.max_age
            ),
        ),
        Some(t) => (
            StatusCode::OK,
            format!("ok: last successful backup {:.0}s ago\n", now - t),
        ),
    }
}

fn respond(path: &str, state: &State) -> Response<Full<Bytes>> {
    let now = super::unix_now();
    let (code, body, ctype) = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        match path {
            "/metrics" => (
                StatusCode::OK,
                with_capture(&s),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            "/healthz" => {
                let (c, b) = health(&s, now);
                (c, b, "text/plain; charset=utf-8")
            }
            _ => (
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /healthz\n".into(),
                "text/plain; charset=utf-8",
            ),
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The metrics text, with the capture families before the closing `# EOF` when capture
/// runs here.
fn with_capture(s: &Shared) -> String {
    let Some(m) = &s.capture else {
        return s.metrics.clone();
    };
    let base = s.metrics.strip_suffix("# EOF\n").unwrap_or(&s.metrics);
    format!("{base}{}# EOF\n", super::capture::metrics_text(m))
}

/// Serve until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: State) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = respond(req.uri().path(), &state);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_flips_with_age() {
        let mut s = Shared {
            max_age: 10.0,
            ..Shared::default()
        };
        assert_eq!(health(&s, 100.0).0, StatusCode::SERVICE_UNAVAILABLE);
        s.last_success = Some(95.0);
        assert_eq!(health(&s, 100.0).0, StatusCode::OK);
        let (c, body) = health(&s, 200.0);
        assert_eq!(c, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("unhealthy: last successful backup 105s ago"),
            "{body}"
        );
    }

    #[test]
    fn health_fails_when_capture_lags() {
        use std::sync::atomic::Ordering::Relaxed;
        let m = std::sync::Arc::new(crate::jobs::capture::CaptureMetrics::default());
        let mut s = Shared {
            max_age: 10.0,
            last_success: Some(95.0),
            capture: Some(m.clone()),
            capture_max_lag: 30.0,
            ..Shared::default()
        };
        m.head_revision.store(10, Relaxed);
        m.durable_revision.store(10, Relaxed);
        assert_eq!(health(&s, 100.0).0, StatusCode::OK);
        m.durable_revision.store(7, Relaxed);
        m.oldest_unstored_ms.store(1, Relaxed);
        let (c, body) = health(&s, 100.0);
        assert_eq!(c, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("capture lags") && body.contains("3 revisions"),
            "{body}"
        );
        s.metrics = "a 1\n# EOF\n".into();
        let text = with_capture(&s);
        assert!(
            text.starts_with("a 1\n# TYPE lifeboat_capture_lag_seconds gauge"),
            "{text}"
        );
        assert!(
            text.ends_with("lifeboat_capture_segments_total 0\n# EOF\n"),
            "{text}"
        );
    }
}
