//! Building and running the service: storage, bus, HTTP, and an orderly shutdown.

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
use xcord_core::{Clock, Core, CoreDeps, CoreSettings, SystemClock};
use xcord_gateway::{Gateway, GatewaySettings};
use xcord_store::{Store, StoreOptions};

use crate::config::{Config, Role};
use crate::secrets;
use crate::transport::{self, ConnectionLimits};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A built service, bound to its address and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    gateway: Option<Arc<Gateway>>,
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
        // Scale mode shares the bus, presence and rate limits through Redis.
        let (bus, presence, limiter): (
            Arc<dyn EventBus>,
            Arc<dyn PresenceStore>,
            Arc<dyn RateLimiter>,
        ) = match &config.redis_url {
            Some(url) => {
                let r = xcord_redis::connect(url, &config.redis_prefix, config.node_id).await?;
                (r.bus, r.presence, r.limiter)
            }
            None => (
                Arc::new(InProcessBus::default()),
                Arc::new(PresenceRegistry::default()),
                Arc::new(InMemoryRateLimiter::new(clock.clone())),
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
            },
        )
        .await?;

        let metrics = xcord_api::metrics::prometheus()?;
        let state = AppState::new(AppStateInner {
            core: Arc::new(core),
            metrics,
            shutting_down: AtomicBool::new(false),
            started_at: Instant::now(),
        });
        let settings = HttpSettings {
            cors_origins: config.cors_origins.clone(),
            body_limit: config.body_limit_bytes,
            request_timeout: config.request_timeout(),
            serve_rest: config.runs(Role::Api),
        };
        let mut router = xcord_api::build_router(state.clone(), &settings)?;
        let gateway = if config.runs(Role::Gateway) {
            let gw = Gateway::start(
                state.core.clone(),
                GatewaySettings {
                    heartbeat_ms: config.gateway_heartbeat_ms,
                    resume_secs: config.gateway_resume_secs,
                    send_queue: config.gateway_send_queue,
                    replay_limit: config.gateway_replay_events,
                    identify_secs: config.gateway_identify_secs,
                    ..GatewaySettings::default()
                },
            );
            router = router.merge(gw.router());
            Some(gw)
        } else {
            None
        };

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
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
            gateway,
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
        self.gateway.as_ref()
    }

    /// The connection limits in force (the cap after the descriptor limit is applied).
    pub fn connection_limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests
    /// finish (up to a deadline), and closes the database.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            state,
            gateway,
            addr: _,
            limits,
        } = self;
        // Gateway sessions hear op 7 and close as soon as shutdown begins; upgraded
        // connections are not part of the HTTP server's own drain. The sessions are saved
        // for resume before the database closes.
        let gateway_stopped = gateway.map(|gw| {
            let signal = shutdown.clone();
            tokio::spawn(async move {
                signal.cancelled().await;
                gw.shutdown(Duration::from_secs(5)).await;
            })
        });
        let drain_state = state.clone();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            drain_state.begin_shutdown();
        });
        transport::serve(listener, router, limits, shutdown, DRAIN_DEADLINE).await;
        if let Some(stopped) = gateway_stopped {
            let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
        }
        state.core.drain_background(Duration::from_secs(5)).await;
        state.core.store.close().await;
        Ok(())
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
