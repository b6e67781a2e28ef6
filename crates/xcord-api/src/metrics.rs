//! Prometheus metrics: one recorder per process, rendered at `/metrics`.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder's handle, installed on first use. A process has one global
/// recorder, so several servers in one test process share it. The whole installation runs
/// inside `get_or_init`, so concurrent first callers wait for it instead of racing.
pub fn prometheus() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map_err(|e| format!("metrics buckets: {e}"))?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "another metrics recorder is installed".to_owned())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method, route and status"
    );
    metrics::describe_gauge!("db_pool_connections", "Database pool connections by state");
    metrics::describe_gauge!("gateway_connections", "Open gateway WebSocket connections");
    metrics::describe_counter!(
        "gateway_events_dispatched_total",
        "Events sent to gateway sessions"
    );
    metrics::describe_counter!(
        "bus_events_published_total",
        "Events published on the event bus"
    );
    metrics::describe_counter!(
        "bus_lagged_events_total",
        "Events a slow bus subscriber missed"
    );
    metrics::describe_gauge!("job_queue_depth", "Jobs waiting in the durable queue");
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.core.store.pool_stats();
    let idle = pool.idle as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "active").set(f64::from(pool.size) - idle);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_use_installs_once_and_everyone_gets_the_handle() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    prometheus().is_ok()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().ok(), Some(true));
        }
        metrics::counter!("race_probe_total").increment(1);
        let text = prometheus().map(|h| h.render()).unwrap_or_default();
        assert!(text.contains("race_probe_total 1"), "{text}");
    }
}
