//! Prometheus metrics, served on their own listen address.

use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("latchkey_http_requests_total", &labels).increment(1);
    let labels = [("method", method.to_owned()), ("route", route.to_owned())];
    metrics::histogram!("latchkey_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
}

/// A ceremony finished: `kind` is registration, sign-in…; `outcome` success or a failure slug.
pub fn ceremony(kind: &'static str, outcome: &str) {
    metrics::counter!("latchkey_ceremonies_total", "kind" => kind, "outcome" => outcome.to_owned())
        .increment(1);
}

pub fn license_minted() {
    metrics::counter!("latchkey_licenses_minted_total").increment(1);
}

pub fn revocation(kind: &'static str) {
    metrics::counter!("latchkey_revocations_total", "kind" => kind).increment(1);
}

pub fn database(kind: &'static str, elapsed: Duration) {
    metrics::histogram!("latchkey_db_seconds", "kind" => kind).record(elapsed.as_secs_f64());
}
