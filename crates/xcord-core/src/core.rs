//! The [`Core`]: every service a use-case needs, built once at start-up.

use std::sync::Arc;

use tokio_util::task::TaskTracker;
use xcord_bus::{BusEvent, EventBus, Topic};
use xcord_store::{Store, UserRecord};
use xcord_types::SnowflakeGenerator;
use xcord_types::events::Event;
use xcord_types::rest::users::{PublicUser, SelfUser, UserSummary};

use crate::crypto::SecretBox;
use crate::mail::{Mail, Mailer};
use crate::password::PasswordAlgorithm;
use crate::presence::PresenceStore;
use crate::ratelimit::{RateDecision, RateLimitSettings, RateLimiter, Tier};
use crate::revocation::Revocations;
use crate::token::TokenKeys;
use crate::{Clock, Error, Result};

/// Behaviour taken from configuration.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Snowflake node id.
    pub node_id: u16,
    /// Access-token lifetime.
    pub access_ttl_secs: u64,
    /// Refresh-token (session) lifetime.
    pub refresh_ttl_secs: u64,
    /// Refuse login until the e-mail is verified.
    pub require_email_verification: bool,
    /// Algorithm for new password hashes.
    pub password_algorithm: PasswordAlgorithm,
    /// Base URL put into e-mailed links.
    pub public_url: String,
    /// Rate limits.
    pub rate_limits: RateLimitSettings,
    /// A server every new user joins (seed 002's "Hype Community").
    pub default_server: Option<xcord_types::Snowflake>,
    /// Largest attachment, in bytes.
    pub attachment_max_bytes: usize,
    /// How long a closed gateway session can be resumed (`XCORD_GATEWAY_RESUME_SECS`); the
    /// event log keeps events that long and a margin. Every node prunes the log by it.
    pub resume_secs: u64,
}

/// What the core is built from.
pub struct CoreDeps {
    /// The database.
    pub store: Store,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Request counters.
    pub limiter: Arc<dyn RateLimiter>,
    /// JWT signing secret.
    pub jwt_secret: Vec<u8>,
    /// 32-byte key sealing secrets at rest.
    pub sealing_key: Vec<u8>,
    /// Key signing attachment URLs.
    pub cdn_key: Vec<u8>,
    /// Where uploads are stored.
    pub files: Arc<dyn crate::storage::FileStore>,
    /// Who is online.
    pub presence: Arc<dyn PresenceStore>,
}

/// Where a request came from, for sessions and rate limits.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The peer address.
    pub ip: Option<String>,
    /// The User-Agent header.
    pub user_agent: Option<String>,
}

/// All services; one per process, shared by every request.
pub struct Core {
    /// The database.
    pub store: Store,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Snowflake ids of this node.
    pub ids: SnowflakeGenerator,
    /// Configuration.
    pub settings: CoreSettings,
    /// Revoked access tokens.
    pub revocations: Arc<Revocations>,
    /// Who is online.
    pub presence: Arc<dyn PresenceStore>,
    pub(crate) tokens: TokenKeys,
    pub(crate) sealer: SecretBox,
    mailer: Arc<dyn Mailer>,
    limiter: Arc<dyn RateLimiter>,
    tasks: TaskTracker,
    pub(crate) files: Arc<dyn crate::storage::FileStore>,
    pub(crate) cdn_mac: hmac::Hmac<sha2::Sha256>,
    /// Slowmode posts and typing indicators this node holds.
    pub activity: crate::messages::ChannelActivity,
    /// Voice states of connected users.
    pub voice: crate::voice::VoiceStates,
    /// The media plane, installed by the `voice` role.
    pub(crate) voice_media: std::sync::OnceLock<std::sync::Arc<dyn crate::voice::VoiceMedia>>,
    /// Where each voice channel's room lives (scale mode), and this node's entry in it.
    pub(crate) voice_rooms: std::sync::OnceLock<crate::voice::RoomDirectory>,
    /// Channel contexts and self views, dropped by events.
    pub(crate) caches: Arc<crate::context_cache::Caches>,
    /// Where dispatchable events are written before they are published.
    pub event_log: crate::event_log::EventLog,
    /// A hash of a random password, verified against when a login names no user, so that
    /// "no such user" and "wrong password" take the same time.
    pub(crate) decoy_hash: String,
    /// Woken when this node enqueues or moves a job, so its workers look at once.
    pub jobs_enqueued: tokio::sync::Notify,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Builds the core: loads revocations still in force and prepares the decoy hash. Its
    /// per-node tasks start with [`Core::start_node_tasks`].
    pub async fn new(deps: CoreDeps, settings: CoreSettings) -> anyhow::Result<Self> {
        let now = deps.clock.now();
        let revocations = Revocations::load(&deps.store, now)
            .await?
            .announce_over(deps.bus.clone(), settings.node_id);
        let revocations = Arc::new(revocations);
        let decoy_hash = crate::password::hash_password(
            settings.password_algorithm,
            crate::crypto::random_token(16),
        )
        .await?;
        let caches = Arc::new(crate::context_cache::Caches::default());
        let cdn_mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&deps.cdn_key)
            .map_err(|_| anyhow::anyhow!("the attachment signing key is unusable"))?;
        Ok(Self {
            event_log: crate::event_log::EventLog::start(deps.store.clone()),
            ids: SnowflakeGenerator::new(settings.node_id),
            tokens: TokenKeys::new(&deps.jwt_secret),
            sealer: SecretBox::new(&deps.sealing_key)?,
            store: deps.store,
            bus: deps.bus,
            clock: deps.clock,
            mailer: deps.mailer,
            limiter: deps.limiter,
            settings,
            revocations,
            presence: deps.presence,
            tasks: TaskTracker::new(),
            files: deps.files,
            cdn_mac,
            activity: crate::messages::ChannelActivity::default(),
            voice: crate::voice::VoiceStates::default(),
            voice_media: std::sync::OnceLock::new(),
            voice_rooms: std::sync::OnceLock::new(),
            caches,
            decoy_hash,
            jobs_enqueued: tokio::sync::Notify::new(),
        })
    }

    /// Counts a request against `tier` for `key`. `Ok(None)` when limits are off;
    /// `Err(RateLimited)` when the budget is spent.
    pub async fn rate_limit(&self, tier: Tier, key: &str) -> Result<Option<RateDecision>> {
        if !self.settings.rate_limits.enabled {
            return Ok(None);
        }
        let d = self
            .limiter
            .hit(tier, key, self.settings.rate_limits.limit(tier))
            .await
            .map_err(Error::Unavailable)?;
        if d.allowed {
            Ok(Some(d))
        } else {
            Err(Error::RateLimited {
                retry_after_secs: d.reset_secs,
                limit: d.limit,
            })
        }
    }

    /// Publishes an event that reports no stored change (typing, presence, voice states):
    /// the payload is serialized here, once, and the event log gets it from a batching
    /// writer without the publisher waiting. Events of stored changes go through a
    /// [`UnitOfWork`](crate::unit_of_work::UnitOfWork) instead, written with the change.
    pub async fn publish_ephemeral(&self, topic: Topic, event: Event) {
        // This node's own changes invalidate cached permissions before anyone hears of them.
        self.caches.on_event(&topic, &event);
        let name = event.name();
        let mut event = match BusEvent::new(topic, event, self.settings.node_id) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, event = name, "cannot serialize an event");
                return;
            }
        };
        if event.op().is_some() {
            // Queued for the log before it is published (see `event_log`).
            let id = self.ids.next_id().get();
            self.event_log
                .append(xcord_store::LoggedEvent {
                    id,
                    topic: topic.to_text(),
                    name: name.to_owned(),
                    data: event.data.clone(),
                })
                .await;
            event = event.with_id(id);
        }
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(error = %e, event = name, "event not published");
        }
    }

    /// Sends mail in the background; failures are logged. Shutdown waits for it.
    pub fn send_mail(&self, mail: Mail) {
        let mailer = self.mailer.clone();
        self.tasks.spawn(async move {
            if let Err(e) = mailer.send(&mail).await {
                tracing::warn!(error = format!("{e:#}"), "mail not delivered");
            }
        });
    }

    /// Runs `fut` in the background, tracked so shutdown can wait for it.
    pub fn spawn_background<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Waits (up to `limit`) for background work such as mail to finish, then writes what
    /// the event log holds and ends its writer; used at shutdown, after the node's tasks
    /// ended and before the database closes.
    pub async fn drain_background(&self, limit: std::time::Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
        // What this node published last is in the log before the database closes, whatever
        // the other tasks did.
        if tokio::time::timeout(limit, self.event_log.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the event log did not flush in time; a resume may miss the last events"
            );
        }
    }

    /// The public URL of a `/cdn/` key.
    pub fn cdn_url(key: &str) -> String {
        format!("/cdn/{key}")
    }

    /// The signed-in user's own view.
    pub fn self_user(u: &UserRecord) -> SelfUser {
        SelfUser {
            id: u.id,
            username: u.username.clone(),
            discriminator: u.discriminator.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            avatar: u.avatar.as_deref().map(Self::cdn_url),
            banner: u.banner.as_deref().map(Self::cdn_url),
            bio: u.bio.clone(),
            custom_status: u.custom_status.clone(),
            status: u.status.clone(),
            is_guest: u.is_guest,
            two_factor_enabled: u.mfa_enabled,
            created_at: u.created_at,
        }
    }

    /// Another user's public view.
    pub fn public_user(u: &UserRecord) -> PublicUser {
        PublicUser {
            id: u.id,
            username: u.username.clone(),
            discriminator: u.discriminator.clone(),
            display_name: u.display_name.clone(),
            avatar: u.avatar.as_deref().map(Self::cdn_url),
            banner: u.banner.as_deref().map(Self::cdn_url),
            bio: u.bio.clone(),
            custom_status: u.custom_status.clone(),
            is_guest: u.is_guest,
            created_at: u.created_at,
        }
    }

    /// The short form.
    pub fn summary(u: &UserRecord) -> UserSummary {
        UserSummary {
            id: u.id,
            username: u.username.clone(),
            discriminator: u.discriminator.clone(),
            avatar: u.avatar.as_deref().map(Self::cdn_url),
            display_name: u.display_name.clone(),
        }
    }
}
