//! Health: `/health` (dependencies and version), `/health/live` (the process answers),
//! `/health/ready` (it should receive traffic).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use xcord_types::Timestamp;

use crate::AppState;

/// How long a dependency may take to answer a health probe before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The body of `/health`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// `OK`, or `DOWN` when a required dependency is down.
    pub status: &'static str,
    /// When the report was made.
    pub timestamp: Timestamp,
    /// xcord's version.
    pub version: &'static str,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Each dependency: `up` or `down`.
    #[schema(value_type = Object)]
    pub services: BTreeMap<&'static str, &'static str>,
    /// Present on 503, as in every error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Present on 503: which dependency is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The body of `/health/live` and `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    /// `OK` or `DOWN`.
    pub status: &'static str,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// A sentence saying why, when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

async fn database_up(state: &AppState) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.core.store.ping()).await,
        Ok(Ok(()))
    )
}

async fn redis_up(state: &AppState) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.core.bus.ping()).await,
        Ok(Ok(()))
    )
}

/// `GET /health`: status of the service and its dependencies; 503 when the database (or, in
/// scale mode, Redis) is down.
#[utoipa::path(get, path = "/health", tag = "operations", responses(
    (status = 200, description = "Healthy", body = HealthReport),
    (status = 503, description = "A required dependency is down", body = HealthReport)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let db = database_up(&state).await;
    let mut services = BTreeMap::new();
    services.insert("database", if db { "up" } else { "down" });
    services.insert("bus", state.core.bus.kind());
    let redis = if state.core.bus.kind() == "redis" {
        let up = redis_up(&state).await;
        services.insert("redis", if up { "up" } else { "down" });
        up
    } else {
        true
    };
    let ok = db && redis;
    let report = HealthReport {
        status: if ok { "OK" } else { "DOWN" },
        timestamp: state.core.clock.now(),
        version: VERSION,
        uptime_seconds: state.started_at.elapsed().as_secs(),
        services,
        error: (!ok).then_some("Service Unavailable"),
        message: (!ok).then(|| {
            if db {
                "Redis is unreachable.".to_owned()
            } else {
                "The database is unreachable.".to_owned()
            }
        }),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// `GET /health/live`: the process is up and answering.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Alive", body = Probe)))]
pub async fn live() -> Json<Probe> {
    Json(Probe {
        status: "OK",
        error: None,
        message: None,
    })
}

/// `GET /health/ready`: the database answers and the node is not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "Ready for traffic", body = Probe),
    (status = 503, description = "Not ready", body = Probe)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let reason = if state.is_shutting_down() {
        Some("The server is shutting down.")
    } else if !database_up(&state).await {
        Some("The database is unreachable.")
    } else {
        None
    };
    match reason {
        None => Json(Probe {
            status: "OK",
            error: None,
            message: None,
        })
        .into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "DOWN",
                error: Some("Service Unavailable"),
                message: Some(why.to_owned()),
            }),
        )
            .into_response(),
    }
}
