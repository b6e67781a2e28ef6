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
    /// Cancelled once requests and sessions have drained, for roles whose tasks do not
    /// follow the gateway's shutdown.
    pub stop: Option<tokio_util::sync::CancellationToken>,
}

impl RunningRole {
    fn without_tasks(role: Role) -> Self {
        Self {
            role,
            routes: None,
            gateway: None,
            tasks: Vec::new(),
            stop: None,
        }
    }
}

/// Starts `role` on `core`.
pub async fn start(role: Role, core: &Arc<Core>, config: &Config) -> anyhow::Result<RunningRole> {
    match role {
        // The REST routes are mounted by the API router itself (`HttpSettings::serve_rest`),
        // inside the layers every route shares. A request's work ends with the request, so
        // the HTTP drain is all the shutdown it needs.
        Role::Api => Ok(RunningRole::without_tasks(role)),
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
            Ok(RunningRole {
                role,
                routes: Some(gateway.router()),
                gateway: Some(gateway),
                tasks,
                stop: None,
            })
        }
        Role::Voice => start_voice(core, config).await,
        Role::Jobs => start_jobs(core, config).await,
    }
}

/// The job queue's workers, and the automatic messages' planner when they are on.
async fn start_jobs(core: &Arc<Core>, config: &Config) -> anyhow::Result<RunningRole> {
    let mut settings = xcord_jobs::JobsSettings::new(config.node_id);
    let url = config.effective_database_url();
    if url.starts_with("postgres") {
        settings.postgres_url = Some(url);
    }
    settings.amqp_url = config.amqp_url.clone();
    // Test hooks of the crash tests (docs/jobs.md); never set in production.
    if let Ok(v) = std::env::var("XCORD_TEST_JOBS_FAULT") {
        settings.fault = xcord_jobs::Fault::parse(&v);
        tracing::warn!(
            fault = v,
            "XCORD_TEST_JOBS_FAULT is set: this node stages a crash"
        );
    }
    if let Some(ms) = std::env::var("XCORD_TEST_JOBS_LEASE_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|ms| *ms >= 300)
    {
        settings.lease_ms = ms;
    }
    if config.auto_messages {
        settings.auto_messages = Some(xcord_jobs::cron::AutoMessages {
            cron: xcord_jobs::cron::parse_cron(&config.auto_messages_cron)?,
            window_secs: config.auto_messages_window_secs,
            pool: Arc::new(xcord_jobs::cron::load_pool(
                config.auto_messages_pool.as_deref(),
            )?),
        });
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = xcord_jobs::start(core.clone(), settings, stop.clone()).await?;
    Ok(RunningRole {
        role: Role::Jobs,
        routes: None,
        gateway: None,
        tasks,
        stop: Some(stop),
    })
}

/// The SFU on its UDP port (and ICE-TCP on the same port number), installed as the core's
/// media plane; its events go back to the core.
async fn start_voice(core: &Arc<Core>, config: &Config) -> anyhow::Result<RunningRole> {
    use anyhow::Context;
    let listen = config.voice_listen();
    let stop = tokio_util::sync::CancellationToken::new();
    let (sfu, events, media_loop) = xcord_voice::Sfu::start(
        xcord_voice::SfuConfig {
            listen,
            public_ip: config.voice_public_ip,
        },
        stop.clone(),
    )
    .await
    .with_context(|| format!("cannot listen for voice media on {listen} (XCORD_VOICE_LISTEN)"))?;
    xcord_voice::describe_metrics();
    tracing::info!(
        media = %sfu.local_addr(),
        announced = %sfu.announced_addr(),
        "voice media listening (UDP, and ICE-TCP on the same port)"
    );
    core.install_voice_media(Arc::new(xcord_voice::SfuMedia(sfu)));
    let pump = NodeTask::spawn(
        "voice events",
        xcord_voice::pump_events(core.clone(), events, stop.clone()),
    );
    let media = NodeTask::spawn("voice media", async move {
        let _ = media_loop.await;
    });
    Ok(RunningRole {
        role: Role::Voice,
        routes: None,
        gateway: None,
        tasks: vec![pump, media],
        stop: Some(stop),
    })
}
