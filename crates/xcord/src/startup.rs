//! Building and running the service: storage, bus, the core's per-node tasks, the roles,
//! HTTP, and an orderly shutdown that awaits every task it started.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use xcord_api::{AppState, AppStateInner, HttpSettings};
use xcord_bus::{EventBus, InProcessBus};
use xcord_core::mail::{Mailer, OutboxMailer, SmtpMailer};
use xcord_core::presence::{PresenceRegistry, PresenceStore};
use xcord_core::ratelimit::{InMemoryRateLimiter, RateLimitSettings, RateLimiter};
use xcord_core::storage::{FileStore, LocalFileStore};
use xcord_core::voice::{RoomOwner, VoiceRooms};
use xcord_core::{Clock, Core, CoreDeps, CoreSettings, NodeTask, SystemClock};
use xcord_gateway::Gateway;
use xcord_store::{Store, StoreOptions};

use crate::config::{Config, Role};
use crate::roles::{self, RunningRole};
use crate::secrets;
use crate::transport::{self, ConnectionLimits};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long gateway connections get to close after op 7.
const GATEWAY_CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// How long the gateway's shutdown may take in all (saving sessions, then closing).
const GATEWAY_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the tasks of one group (the roles', then the core's) get to end once told.
const TASKS_DEADLINE: Duration = Duration::from_secs(5);
/// How long background work (mail) gets, and then the event log's last writes, before
/// the database closes.
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(5);
/// How long the store gets to write the posts queued for it and close its connections.
const STORE_CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// What several nodes share through Redis, or their one-process stand-ins: the bus,
/// presence, rate limits and (scale mode only) the voice room directory.
type SharedServices = (
    Arc<dyn EventBus>,
    Arc<dyn PresenceStore>,
    Arc<dyn RateLimiter>,
    Option<Arc<dyn VoiceRooms>>,
);

/// A built service, bound to its address and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    roles: Vec<RunningRole>,
    core_tasks: Vec<NodeTask>,
    core_stop: CancellationToken,
    addr: SocketAddr,
    limits: ConnectionLimits,
}

impl Application {
    /// Prepares everything: data directory, secrets, database (migrated), bus, router, and
    /// the bound listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`] with a chosen clock (tests move time with it).
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let files = Arc::new(LocalFileStore::new(config.data_dir.clone()));
        Self::build_with(config, clock, files).await
    }

    /// As [`Application::build`] with a chosen clock and the store every uploaded file goes
    /// to (the data directory's `cdn/` and `attachments/` folders otherwise).
    pub async fn build_with(
        config: &Config,
        clock: Arc<dyn Clock>,
        files: Arc<dyn FileStore>,
    ) -> anyhow::Result<Self> {
        config.check_roles()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let jwt_secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => secrets::load_or_create(&config.data_dir, "jwt_secret", 64)?,
        };
        // With XCORD_JWT_SECRET set, nodes sharing it also share these two keys (TOTP
        // secrets sealed on one node open on another; attachment links verify everywhere).
        let master = config.jwt_secret.as_deref();
        let sealing_key = hex::decode(secrets::load_or_derive(
            &config.data_dir,
            "secret_key",
            32,
            master,
        )?)
        .context("the secret_key file in the data directory is not hex")?;
        let cdn_key = hex::decode(secrets::load_or_derive(
            &config.data_dir,
            "cdn_key",
            32,
            master,
        )?)
        .context("the cdn_key file in the data directory is not hex")?;

        let store = connect_store(config).await?;
        store.migrate().await?;

        let mailer: Arc<dyn Mailer> = match &config.smtp_url {
            Some(url) => Arc::new(SmtpMailer::new(url, &config.mail_from)?),
            None => Arc::new(OutboxMailer::new(
                config.data_dir.join("outbox"),
                &config.mail_from,
            )?),
        };
        // Scale mode shares the bus, presence, rate limits and the voice room directory
        // through Redis.
        let (bus, presence, limiter, voice_rooms): SharedServices = match &config.redis_url {
            Some(url) => {
                let r = xcord_redis::connect(url, &config.redis_prefix, config.node_id).await?;
                (r.bus, r.presence, r.limiter, Some(r.voice_rooms))
            }
            None => (
                Arc::new(InProcessBus::default()),
                Arc::new(PresenceRegistry::default()),
                Arc::new(InMemoryRateLimiter::new(clock.clone())),
                None,
            ),
        };
        let core = Core::new(
            CoreDeps {
                store,
                bus,
                clock: clock.clone(),
                mailer,
                limiter,
                jwt_secret: jwt_secret.into_bytes(),
                sealing_key,
                cdn_key,
                files,
                presence,
            },
            CoreSettings {
                node_id: config.node_id,
                access_ttl_secs: config.access_token_ttl_secs,
                refresh_ttl_secs: config.refresh_token_ttl_secs,
                require_email_verification: config.require_email_verification,
                password_algorithm: config.password_hash,
                public_url: config.effective_public_url(),
                rate_limits: RateLimitSettings {
                    enabled: config.rate_limits,
                    limits: config.rate_limit_overrides.clone(),
                },
                default_server: config.default_server_id,
                attachment_max_bytes: config.attachment_max_bytes,
                resume_secs: config.gateway_resume_secs,
            },
        )
        .await?;
        let mut core = core;
        if core.settings.default_server.is_none()
            && let Some(name) = &config.default_server_name
        {
            core.settings.default_server = Some(
                core.ensure_default_server(name)
                    .await
                    .context("cannot set up the default server")?,
            );
        }
        let core = Arc::new(core);

        let metrics = xcord_api::metrics::prometheus()?;
        let state = AppState::new(AppStateInner {
            core: core.clone(),
            metrics,
            shutting_down: AtomicBool::new(false),
            voice_forwarder: xcord_api::VoiceForwarder::new()?,
            started_at: Instant::now(),
        });
        let settings = HttpSettings {
            cors_origins: config.cors_origins.clone(),
            body_limit: config.body_limit_bytes,
            request_timeout: config.request_timeout(),
            serve_rest: config.runs(Role::Api),
        };
        let mut router = xcord_api::build_router(state.clone(), &settings)?;

        // Bound before any task starts, so a taken port fails the start with nothing left
        // running.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // Other nodes forward voice signaling for the rooms this node holds to this URL.
        if let Some(rooms) = voice_rooms {
            let url = config.effective_internal_url(addr);
            tracing::info!(internal_url = %url, "voice rooms recorded in Redis");
            core.install_voice_rooms(
                rooms,
                RoomOwner {
                    node_id: config.node_id,
                    url,
                },
            );
        }

        // Every node runs the core's tasks, whatever its roles; then each role its own.
        let core_stop = CancellationToken::new();
        let core_tasks = core.start_node_tasks(&core_stop);
        let mut roles: Vec<RunningRole> = Vec::with_capacity(config.roles.len());
        for role in &config.roles {
            roles.push(roles::start(*role, &core, config).await?);
        }
        for role in &roles {
            if let Some(routes) = &role.routes {
                router = router.merge(routes.clone());
            }
        }

        let descriptors = transport::descriptor_limit();
        let max_connections = transport::connection_cap(config.max_connections, descriptors);
        if config.max_connections.is_some_and(|c| c > max_connections) {
            tracing::warn!(
                max_connections,
                descriptors,
                "XCORD_MAX_CONNECTIONS is above what the descriptor limit allows; lowered"
            );
        }
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            keepalive_idle: Duration::from_secs(config.keepalive_idle_secs),
            max_connections,
        };
        Ok(Self {
            listener,
            router,
            state,
            roles,
            core_tasks,
            core_stop,
            addr,
            limits,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state, for tests that need to reach the store or bus directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The gateway, when this node runs that role.
    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.roles.iter().find_map(|r| r.gateway.as_ref())
    }

    /// The connection limits in force (the cap after the descriptor limit is applied).
    pub fn connection_limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Serves until `shutdown` is cancelled, then winds down in order: stop accepting, let
    /// in-flight requests finish and gateway sessions move on (op 7), await the roles'
    /// tasks, then the core's, then background work and the event log, and finally close
    /// the database once the message committer has written what it holds. Every step has a
    /// deadline, so a stuck task delays the exit but never prevents it.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            state,
            roles,
            core_tasks,
            core_stop,
            addr: _,
            limits,
        } = self;
        let gateway = roles.iter().find_map(|r| r.gateway.clone());
        // On the signal: readiness turns 503 at once; gateway sessions are saved for resume,
        // hear op 7 and close (upgraded connections are not part of the HTTP drain).
        let on_signal = async {
            shutdown.cancelled().await;
            state.begin_shutdown();
            if let Some(gw) = gateway
                && tokio::time::timeout(
                    GATEWAY_SHUTDOWN_DEADLINE,
                    gw.shutdown(GATEWAY_CLOSE_DEADLINE),
                )
                .await
                .is_err()
            {
                tracing::warn!("the gateway did not shut down in time");
            }
        };
        let ((), ()) = tokio::join!(
            transport::serve(listener, router, limits, shutdown.clone(), DRAIN_DEADLINE),
            on_signal,
        );
        // The gateway's tasks were told to end when the shutdown began; the others now.
        for stop in roles.iter().filter_map(|r| r.stop.as_ref()) {
            stop.cancel();
        }
        join_tasks(roles.into_iter().flat_map(|r| r.tasks)).await;
        // The core's tasks last: until the requests and sessions above had finished, they
        // could still start typing indicators, publish, or need the caches kept current.
        core_stop.cancel();
        join_tasks(core_tasks).await;
        state.core.drain_background(BACKGROUND_DEADLINE).await;
        if tokio::time::timeout(STORE_CLOSE_DEADLINE, state.core.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the database did not close in time");
        }
        Ok(())
    }
}

/// Awaits `tasks`, all within [`TASKS_DEADLINE`]; those still running then are aborted.
async fn join_tasks(tasks: impl IntoIterator<Item = NodeTask>) {
    let deadline = tokio::time::Instant::now() + TASKS_DEADLINE;
    for task in tasks {
        let name = task.name();
        if task
            .join(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            tracing::debug!(task = name, "ended");
        }
    }
}

/// Opens the configured database.
pub async fn connect_store(config: &Config) -> anyhow::Result<Store> {
    let opts = StoreOptions {
        max_connections: config.database_max_connections,
        ..StoreOptions::default()
    };
    Store::connect(&config.effective_database_url(), &opts).await
}
