//! The roles a node runs (SPEC §1) and what each starts.
//!
//! Every node, whatever its roles, runs the core's per-node tasks (its bus follower and
//! housekeeping: `xcord_core::node`), started by [`crate::Application::build`]. On top of
//! them each role starts its own routes and tasks and hands their handles back; shutdown
//! awaits every one of them (docs/architecture.md, "One binary, roles").

use std::sync::Arc;

use axum::Router;
use xcord_core::{Core, NodeTask};
use xcord_gateway::{Gateway, GatewaySettings};

use crate::config::{Config, Role};

/// A role started on this node: the routes it adds and the tasks shutdown awaits.
pub struct RunningRole {
    /// Which role.
    pub role: Role,
    /// Routes it serves beside those every node serves (health, metrics, docs).
    pub routes: Option<Router>,
    /// The gateway, for the gateway role: its shutdown saves sessions and sends op 7
    /// before its tasks end.
    pub gateway: Option<Arc<Gateway>>,
    /// Its background tasks; they end once the node's shutdown has begun.
    pub tasks: Vec<NodeTask>,
}

impl RunningRole {
    fn without_tasks(role: Role) -> Self {
        Self {
            role,
            routes: None,
            gateway: None,
            tasks: Vec::new(),
        }
    }
}

/// Starts `role` on `core`.
pub fn start(role: Role, core: &Arc<Core>, config: &Config) -> RunningRole {
    match role {
        // The REST routes are mounted by the API router itself (`HttpSettings::serve_rest`),
        // inside the layers every route shares. A request's work ends with the request, so
        // the HTTP drain is all the shutdown it needs.
        Role::Api => RunningRole::without_tasks(role),
        Role::Gateway => {
            let (gateway, tasks) = Gateway::start(
                core.clone(),
                GatewaySettings {
                    heartbeat_ms: config.gateway_heartbeat_ms,
                    resume_secs: config.gateway_resume_secs,
                    send_queue: config.gateway_send_queue,
                    replay_limit: config.gateway_replay_events,
                    identify_secs: config.gateway_identify_secs,
                    ..GatewaySettings::default()
                },
            );
            RunningRole {
                role,
                routes: Some(gateway.router()),
                gateway: Some(gateway),
                tasks,
            }
        }
        // Accepted so deployments can name them already; the SFU and the job queue come in
        // later issues and will start their tasks here.
        Role::Voice | Role::Jobs => {
            tracing::info!(
                role = role.name(),
                "role accepted; this build has nothing to run for it yet"
            );
            RunningRole::without_tasks(role)
        }
    }
}
