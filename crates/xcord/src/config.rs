//! Configuration: defaults < `xcord.toml` (or `--config FILE`) < `XCORD_*` environment.
//!
//! Every value is checked once here, so the rest of the program trusts it. A bad value
//! names the variable or key it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The roles a process can run (SPEC §1); `serve` runs all by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// REST API, uploads and CDN.
    Api,
    /// The WebSocket gateway.
    Gateway,
    /// Voice signaling and the SFU.
    Voice,
    /// The durable job queue and schedules.
    Jobs,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Api, Role::Gateway, Role::Voice, Role::Jobs];

    /// The role's name as written in `--roles`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Gateway => "gateway",
            Role::Voice => "voice",
            Role::Jobs => "jobs",
        }
    }

    /// Parses a comma-separated role list such as `api,gateway`.
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Role>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let role = Role::ALL
                .into_iter()
                .find(|r| r.name().eq_ignore_ascii_case(part))
                .with_context(|| {
                    format!("unknown role {part:?} (expected api, gateway, voice, jobs)")
                })?;
            if !out.contains(&role) {
                out.push(role);
            }
        }
        if out.is_empty() {
            bail!("the role list is empty (expected some of api, gateway, voice, jobs)");
        }
        Ok(out)
    }
}

pub use xcord_core::password::PasswordAlgorithm as PasswordHash;
use xcord_core::ratelimit::{Limit, Tier};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => bail!("expected `pretty` or `json`, got {other:?}"),
        }
    }
}

/// The validated configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP address (`XCORD_LISTEN`).
    pub listen: SocketAddr,
    /// Media address of the SFU, UDP and ICE-TCP (`XCORD_VOICE_LISTEN`); `None`: the host of
    /// `listen` with port 50000 (port 0 when `listen` has port 0, so test nodes never clash).
    pub voice_listen: Option<SocketAddr>,
    /// Address announced in ICE candidates (`XCORD_VOICE_PUBLIC_IP`); `None`: the media
    /// address, or the first non-loopback one when it is unspecified.
    pub voice_public_ip: Option<std::net::IpAddr>,
    /// Data directory (`XCORD_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database URL (`XCORD_DATABASE_URL`); `None` means SQLite in the data directory.
    pub database_url: Option<String>,
    /// Largest number of pooled database connections.
    pub database_max_connections: u32,
    /// Redis URL (`XCORD_REDIS_URL`): enables multi-node mode.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (`XCORD_REDIS_PREFIX`), so deployments can
    /// share a Redis server.
    pub redis_prefix: String,
    /// Snowflake node id 0–1023 (`XCORD_NODE_ID`).
    pub node_id: u16,
    /// Signing secret (`XCORD_JWT_SECRET`); `None` means generated and kept in the data dir.
    pub jwt_secret: Option<String>,
    /// Whether rate limits apply (`XCORD_RATE_LIMITS=on|off`).
    pub rate_limits: bool,
    /// Refuse login until the e-mail is verified (`XCORD_REQUIRE_EMAIL_VERIFICATION`).
    pub require_email_verification: bool,
    /// Algorithm for new password hashes (`XCORD_PASSWORD_HASH`).
    pub password_hash: PasswordHash,
    /// SMTP server for mail (`XCORD_SMTP_URL`); `None` writes `.eml` files to the outbox.
    pub smtp_url: Option<String>,
    /// Log filter (`XCORD_LOG`).
    pub log: String,
    /// Log format (`XCORD_LOG_FORMAT`); `None` picks pretty on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// Heartbeat interval announced in HELLO (`XCORD_GATEWAY_HEARTBEAT_MS`).
    pub gateway_heartbeat_ms: u64,
    /// Resume window for closed gateway sessions (`XCORD_GATEWAY_RESUME_SECS`).
    pub gateway_resume_secs: u64,
    /// Frames a gateway connection's send queue holds before the client is closed with
    /// 4010 (`XCORD_GATEWAY_SEND_QUEUE`).
    pub gateway_send_queue: usize,
    /// Events a gateway session keeps for resume (`XCORD_GATEWAY_REPLAY_EVENTS`).
    pub gateway_replay_events: usize,
    /// Time a gateway connection has to IDENTIFY or RESUME (`XCORD_GATEWAY_IDENTIFY_SECS`).
    pub gateway_identify_secs: u64,
    /// Time from accept (or from the first byte after an idle period) to a complete
    /// request head (`XCORD_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout_secs: u64,
    /// Time a keep-alive connection may wait for its next request, or a response for the
    /// client to read it (`XCORD_KEEPALIVE_IDLE_SECS`).
    pub keepalive_idle_secs: u64,
    /// Open HTTP connections at most (`XCORD_MAX_CONNECTIONS`); `None`: as many as the
    /// descriptor limit allows after a reserve.
    pub max_connections: Option<usize>,
    /// CORS origins (`XCORD_CORS_ORIGINS`, comma-separated; `*` for any; empty for none).
    pub cors_origins: Vec<String>,
    /// Largest JSON request body in bytes (`XCORD_BODY_LIMIT_BYTES`).
    pub body_limit_bytes: usize,
    /// Longest time a request may take (`XCORD_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Access-token lifetime (`XCORD_ACCESS_TOKEN_TTL_SECS`).
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime (`XCORD_REFRESH_TOKEN_TTL_SECS`).
    pub refresh_token_ttl_secs: u64,
    /// Roles to run (`--roles` or `XCORD_ROLES`).
    pub roles: Vec<Role>,
    /// Base URL for links in e-mails (`XCORD_PUBLIC_URL`); `None` means `http://LISTEN`.
    pub public_url: Option<String>,
    /// Base URL other nodes reach this one at, for forwarded voice signaling
    /// (`XCORD_INTERNAL_URL`); `None` means `http://` and the bound HTTP address.
    pub internal_url: Option<String>,
    /// Sender of outgoing mail (`XCORD_MAIL_FROM`).
    pub mail_from: String,
    /// Budgets that differ from seed 000's (`XCORD_RATE_LIMIT_<TIER>=COUNT/SECONDS`).
    pub rate_limit_overrides: std::collections::HashMap<Tier, Limit>,
    /// A server every new user joins (`XCORD_DEFAULT_SERVER_ID`).
    pub default_server_id: Option<xcord_types::Snowflake>,
    /// Without an id: the name of a default server to create once and use
    /// (`xcord serve --default-server NAME`).
    pub default_server_name: Option<String>,
    /// Largest message attachment in bytes (`XCORD_ATTACHMENT_MAX_BYTES`).
    pub attachment_max_bytes: usize,
    /// RabbitMQ carries due jobs (`XCORD_AMQP_URL`, `amqp://…`); `None`: the database.
    pub amqp_url: Option<String>,
    /// Automatic messages on (`XCORD_AUTO_MESSAGES`).
    pub auto_messages: bool,
    /// When automatic messages are planned (`XCORD_AUTO_MESSAGES_CRON`, UTC).
    pub auto_messages_cron: String,
    /// Spread of their send times (`XCORD_AUTO_MESSAGES_WINDOW_SECS`).
    pub auto_messages_window_secs: u64,
    /// Their message pool file (`XCORD_AUTO_MESSAGES_POOL`); `None`: the built-in ten.
    pub auto_messages_pool: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            voice_listen: None,
            voice_public_ip: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            redis_url: None,
            redis_prefix: "xcord".into(),
            node_id: 0,
            jwt_secret: None,
            rate_limits: true,
            require_email_verification: false,
            password_hash: PasswordHash::Bcrypt(12),
            smtp_url: None,
            log: "info".into(),
            log_format: None,
            gateway_heartbeat_ms: 41_250,
            gateway_resume_secs: 120,
            gateway_send_queue: 1024,
            gateway_replay_events: 1024,
            gateway_identify_secs: 10,
            header_read_timeout_secs: 10,
            keepalive_idle_secs: 75,
            max_connections: None,
            cors_origins: vec!["*".into()],
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            roles: Role::ALL.to_vec(),
            public_url: None,
            internal_url: None,
            mail_from: "xcord <no-reply@localhost>".into(),
            rate_limit_overrides: std::collections::HashMap::new(),
            default_server_id: None,
            default_server_name: None,
            attachment_max_bytes: 25 * 1024 * 1024,
            amqp_url: None,
            auto_messages: false,
            auto_messages_cron: "0 2 * * *".into(),
            auto_messages_window_secs: 86_400,
            auto_messages_pool: None,
        }
    }
}

/// The `xcord.toml` file: every key optional, unknown keys refused (a typo should not be
/// silently ignored). Values are strings or native TOML types alike.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    voice_listen: Option<String>,
    voice_public_ip: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    node_id: Option<u16>,
    jwt_secret: Option<String>,
    rate_limits: Option<Switch>,
    require_email_verification: Option<Switch>,
    password_hash: Option<String>,
    smtp_url: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
    gateway_heartbeat_ms: Option<u64>,
    gateway_resume_secs: Option<u64>,
    gateway_send_queue: Option<usize>,
    gateway_replay_events: Option<usize>,
    gateway_identify_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    keepalive_idle_secs: Option<u64>,
    max_connections: Option<usize>,
    cors_origins: Option<Vec<String>>,
    body_limit_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    roles: Option<Vec<String>>,
    public_url: Option<String>,
    internal_url: Option<String>,
    mail_from: Option<String>,
    default_server_id: Option<String>,
    attachment_max_bytes: Option<usize>,
    amqp_url: Option<String>,
    auto_messages: Option<Switch>,
    auto_messages_cron: Option<String>,
    auto_messages_window_secs: Option<u64>,
    auto_messages_pool: Option<PathBuf>,
    /// `{login = "5/60", register = "3/1h", …}`.
    rate_limit: Option<std::collections::HashMap<String, String>>,
}

/// A boolean written as `true`/`false` or `"on"`/`"off"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Switch {
    Bool(bool),
    Text(String),
}

impl Switch {
    fn get(self, key: &str) -> anyhow::Result<bool> {
        match self {
            Switch::Bool(b) => Ok(b),
            Switch::Text(s) => {
                parse_switch(&s).with_context(|| format!("`{key}` in the config file"))
            }
        }
    }
}

fn parse_switch(s: &str) -> anyhow::Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => bail!("expected on/off (or true/false), got {other:?}"),
    }
}

impl Config {
    /// Loads the configuration: defaults, then the file (`path`, or `./xcord.toml` when it
    /// exists), then the process environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with(path, |k| std::env::var(k).ok())
    }

    /// As [`Config::load`], reading variables through `env` (so tests need not touch the
    /// process environment).
    pub fn load_with(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut cfg = Config::default();
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => env("XCORD_CONFIG")
                .map(PathBuf::from)
                .or_else(|| Some(PathBuf::from("xcord.toml")).filter(|p| p.is_file())),
        };
        if let Some(file) = file {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the config file {}", file.display()))?;
            cfg.apply_file(&text)
                .with_context(|| format!("in the config file {}", file.display()))?;
        }
        cfg.apply_env(&env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, text: &str) -> anyhow::Result<()> {
        let f: FileConfig = toml::from_str(text)?;
        if let Some(v) = f.listen {
            self.listen = parse_listen(&v).context("`listen`")?;
        }
        if let Some(v) = f.voice_listen {
            self.voice_listen = Some(parse_listen(&v).context("`voice_listen`")?);
        }
        if let Some(v) = f.voice_public_ip {
            self.voice_public_ip = Some(parse_ip(&v).context("`voice_public_ip`")?);
        }
        set(&mut self.data_dir, f.data_dir);
        set_opt(&mut self.database_url, f.database_url);
        set(
            &mut self.database_max_connections,
            f.database_max_connections,
        );
        set_opt(&mut self.redis_url, f.redis_url);
        set(&mut self.redis_prefix, f.redis_prefix);
        set(&mut self.node_id, f.node_id);
        set_opt(&mut self.jwt_secret, f.jwt_secret);
        if let Some(s) = f.rate_limits {
            self.rate_limits = s.get("rate_limits")?;
        }
        if let Some(s) = f.require_email_verification {
            self.require_email_verification = s.get("require_email_verification")?;
        }
        if let Some(v) = f.password_hash {
            self.password_hash = v.parse().context("`password_hash`")?;
        }
        set_opt(&mut self.smtp_url, f.smtp_url);
        set(&mut self.log, f.log);
        if let Some(v) = f.log_format {
            self.log_format = Some(v.parse().context("`log_format`")?);
        }
        set(&mut self.gateway_heartbeat_ms, f.gateway_heartbeat_ms);
        set(&mut self.gateway_resume_secs, f.gateway_resume_secs);
        set(&mut self.gateway_send_queue, f.gateway_send_queue);
        set(&mut self.gateway_replay_events, f.gateway_replay_events);
        set(&mut self.gateway_identify_secs, f.gateway_identify_secs);
        set(
            &mut self.header_read_timeout_secs,
            f.header_read_timeout_secs,
        );
        set(&mut self.keepalive_idle_secs, f.keepalive_idle_secs);
        set_opt(&mut self.max_connections, f.max_connections);
        set(&mut self.cors_origins, f.cors_origins);
        set(&mut self.body_limit_bytes, f.body_limit_bytes);
        set(&mut self.request_timeout_secs, f.request_timeout_secs);
        set(&mut self.access_token_ttl_secs, f.access_token_ttl_secs);
        set(&mut self.refresh_token_ttl_secs, f.refresh_token_ttl_secs);
        if let Some(v) = f.roles {
            self.roles = Role::parse_list(&v.join(",")).context("`roles`")?;
        }
        set_opt(&mut self.public_url, f.public_url);
        set_opt(
            &mut self.internal_url,
            f.internal_url.map(|u| u.trim_end_matches('/').to_owned()),
        );
        set(&mut self.attachment_max_bytes, f.attachment_max_bytes);
        set_opt(&mut self.amqp_url, f.amqp_url);
        if let Some(v) = f.auto_messages {
            self.auto_messages = v.get("auto_messages")?;
        }
        set(&mut self.auto_messages_cron, f.auto_messages_cron);
        set(
            &mut self.auto_messages_window_secs,
            f.auto_messages_window_secs,
        );
        set_opt(&mut self.auto_messages_pool, f.auto_messages_pool);
        if let Some(v) = f.default_server_id {
            self.default_server_id = Some(
                v.parse()
                    .map_err(|e| anyhow::anyhow!("`default_server_id`: {e}"))?,
            );
        }
        set(&mut self.mail_from, f.mail_from);
        for (name, value) in f.rate_limit.unwrap_or_default() {
            let tier = Tier::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .with_context(|| format!("unknown rate limit tier `{name}` in [rate_limit]"))?;
            let limit = value
                .parse()
                .with_context(|| format!("`rate_limit.{name}`"))?;
            self.rate_limit_overrides.insert(tier, limit);
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        // An empty variable counts as unset, as shells make `VAR=` easy to leave behind.
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        macro_rules! parsed {
            ($key:literal, $field:expr, $parse:expr) => {
                if let Some(v) = var($key) {
                    $field = $parse(v.trim()).with_context(|| format!("{}={v:?}", $key))?;
                }
            };
        }
        parsed!("XCORD_LISTEN", self.listen, parse_listen);
        parsed!("XCORD_VOICE_LISTEN", self.voice_listen, |v: &str| {
            parse_listen(v).map(Some)
        });
        parsed!("XCORD_VOICE_PUBLIC_IP", self.voice_public_ip, |v: &str| {
            parse_ip(v).map(Some)
        });
        parsed!("XCORD_DATA_DIR", self.data_dir, |v: &str| anyhow::Ok(
            PathBuf::from(v)
        ));
        parsed!("XCORD_DATABASE_URL", self.database_url, |v: &str| {
            anyhow::Ok(Some(v.to_owned()))
        });
        parsed!(
            "XCORD_DATABASE_MAX_CONNECTIONS",
            self.database_max_connections,
            parse_num
        );
        parsed!("XCORD_REDIS_PREFIX", self.redis_prefix, |v: &str| {
            anyhow::Ok(v.to_owned())
        });
        parsed!("XCORD_REDIS_URL", self.redis_url, |v: &str| anyhow::Ok(
            Some(v.to_owned())
        ));
        parsed!("XCORD_NODE_ID", self.node_id, parse_num);
        if let Some(v) = env("XCORD_JWT_SECRET").filter(|v| !v.is_empty()) {
            // Taken verbatim: a secret may legitimately have surrounding spaces.
            self.jwt_secret = Some(v);
        }
        parsed!("XCORD_RATE_LIMITS", self.rate_limits, parse_switch);
        parsed!(
            "XCORD_REQUIRE_EMAIL_VERIFICATION",
            self.require_email_verification,
            parse_switch
        );
        parsed!(
            "XCORD_PASSWORD_HASH",
            self.password_hash,
            PasswordHash::from_str
        );
        parsed!("XCORD_SMTP_URL", self.smtp_url, |v: &str| anyhow::Ok(Some(
            v.to_owned()
        )));
        parsed!("XCORD_LOG", self.log, |v: &str| anyhow::Ok(v.to_owned()));
        parsed!("XCORD_LOG_FORMAT", self.log_format, |v: &str| {
            LogFormat::from_str(v).map(Some)
        });
        parsed!(
            "XCORD_GATEWAY_HEARTBEAT_MS",
            self.gateway_heartbeat_ms,
            parse_num
        );
        parsed!(
            "XCORD_GATEWAY_RESUME_SECS",
            self.gateway_resume_secs,
            parse_num
        );
        parsed!(
            "XCORD_GATEWAY_SEND_QUEUE",
            self.gateway_send_queue,
            parse_num
        );
        parsed!(
            "XCORD_GATEWAY_REPLAY_EVENTS",
            self.gateway_replay_events,
            parse_num
        );
        parsed!(
            "XCORD_GATEWAY_IDENTIFY_SECS",
            self.gateway_identify_secs,
            parse_num
        );
        parsed!(
            "XCORD_HEADER_READ_TIMEOUT_SECS",
            self.header_read_timeout_secs,
            parse_num
        );
        parsed!(
            "XCORD_KEEPALIVE_IDLE_SECS",
            self.keepalive_idle_secs,
            parse_num
        );
        parsed!("XCORD_MAX_CONNECTIONS", self.max_connections, |v: &str| {
            parse_num(v).map(Some)
        });
        parsed!("XCORD_CORS_ORIGINS", self.cors_origins, |v: &str| {
            anyhow::Ok(
                v.split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
            )
        });
        parsed!("XCORD_BODY_LIMIT_BYTES", self.body_limit_bytes, parse_num);
        parsed!(
            "XCORD_REQUEST_TIMEOUT_SECS",
            self.request_timeout_secs,
            parse_num
        );
        parsed!(
            "XCORD_ACCESS_TOKEN_TTL_SECS",
            self.access_token_ttl_secs,
            parse_num
        );
        parsed!(
            "XCORD_REFRESH_TOKEN_TTL_SECS",
            self.refresh_token_ttl_secs,
            parse_num
        );
        parsed!("XCORD_ROLES", self.roles, Role::parse_list);
        parsed!("XCORD_PUBLIC_URL", self.public_url, |v: &str| anyhow::Ok(
            Some(v.trim_end_matches('/').to_owned())
        ));
        parsed!("XCORD_INTERNAL_URL", self.internal_url, |v: &str| {
            anyhow::Ok(Some(v.trim_end_matches('/').to_owned()))
        });
        parsed!("XCORD_MAIL_FROM", self.mail_from, |v: &str| anyhow::Ok(
            v.to_owned()
        ));
        parsed!(
            "XCORD_ATTACHMENT_MAX_BYTES",
            self.attachment_max_bytes,
            parse_num
        );
        parsed!(
            "XCORD_DEFAULT_SERVER_ID",
            self.default_server_id,
            |v: &str| v
                .parse::<xcord_types::Snowflake>()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("expected a server id: {e}"))
        );
        parsed!("XCORD_AMQP_URL", self.amqp_url, |v: &str| anyhow::Ok(Some(
            v.to_owned()
        )));
        parsed!("XCORD_AUTO_MESSAGES", self.auto_messages, parse_switch);
        parsed!(
            "XCORD_AUTO_MESSAGES_CRON",
            self.auto_messages_cron,
            |v: &str| anyhow::Ok(v.trim().to_owned())
        );
        parsed!(
            "XCORD_AUTO_MESSAGES_WINDOW_SECS",
            self.auto_messages_window_secs,
            parse_num
        );
        parsed!(
            "XCORD_AUTO_MESSAGES_POOL",
            self.auto_messages_pool,
            |v: &str| { anyhow::Ok(Some(PathBuf::from(v))) }
        );
        for tier in Tier::ALL {
            let key = format!("XCORD_RATE_LIMIT_{}", tier.name().to_ascii_uppercase());
            if let Some(v) = var(&key) {
                let limit: Limit = v.parse().with_context(|| format!("{key}={v:?}"))?;
                self.rate_limit_overrides.insert(tier, limit);
            }
        }
        Ok(())
    }

    /// Overrides the roles (from `--roles`).
    pub fn set_roles(&mut self, list: &str) -> anyhow::Result<()> {
        self.roles = Role::parse_list(list).context("--roles")?;
        Ok(())
    }

    /// Refuses to run a subset of the roles without Redis (SPEC §1): the other roles then
    /// run in other processes, and processes share events, presence, rate limits and token
    /// revocations only through Redis. Checked when the node starts, once `--roles` has
    /// had its say; every value on its own was checked by [`Config::load`].
    pub fn check_roles(&self) -> anyhow::Result<()> {
        if self.redis_url.is_some() || Role::ALL.iter().all(|r| self.runs(*r)) {
            return Ok(());
        }
        let names: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        bail!(
            "the roles {} are only some of api, gateway, voice, jobs; roles split over \
             several processes need Redis to share events, presence and rate limits: set \
             XCORD_REDIS_URL, or run every role in one process (no --roles or XCORD_ROLES)",
            names.join(",")
        )
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.node_id > xcord_types::snowflake::MAX_NODE_ID {
            bail!("XCORD_NODE_ID must be 0–1023, got {}", self.node_id);
        }
        let has_scheme = |url: &Option<String>, schemes: &[&str]| {
            url.as_deref()
                .is_none_or(|u| schemes.iter().any(|s| u.starts_with(s)))
        };
        if !has_scheme(&self.database_url, &["sqlite:", "postgres:", "postgresql:"]) {
            bail!("XCORD_DATABASE_URL must start with sqlite:// or postgres://");
        }
        if self.redis_prefix.is_empty()
            || !self
                .redis_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("XCORD_REDIS_PREFIX must be letters, digits, '-', '_' or '.'");
        }
        if !has_scheme(&self.redis_url, &["redis://", "rediss://"]) {
            bail!("XCORD_REDIS_URL must start with redis:// or rediss://");
        }
        if !has_scheme(&self.internal_url, &["http://", "https://"]) {
            bail!("XCORD_INTERNAL_URL must start with http:// or https://");
        }
        if !has_scheme(&self.amqp_url, &["amqp://"]) {
            bail!("XCORD_AMQP_URL must start with amqp://");
        }
        if xcord_jobs::cron::parse_cron(&self.auto_messages_cron).is_err() {
            bail!(
                "XCORD_AUTO_MESSAGES_CRON must be a cron pattern of 5 fields (or 6 with seconds), e.g. \"0 2 * * *\""
            );
        }
        if !has_scheme(&self.smtp_url, &["smtp://", "smtps://"]) {
            bail!("XCORD_SMTP_URL must start with smtp:// or smtps://");
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            bail!("XCORD_JWT_SECRET must be at least 32 bytes long");
        }
        if self.gateway_heartbeat_ms < 50 {
            bail!("XCORD_GATEWAY_HEARTBEAT_MS must be at least 50");
        }
        if self.gateway_send_queue == 0 || self.gateway_replay_events == 0 {
            bail!("XCORD_GATEWAY_SEND_QUEUE and XCORD_GATEWAY_REPLAY_EVENTS must be at least 1");
        }
        if self.database_max_connections == 0 {
            bail!("XCORD_DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        if self.body_limit_bytes < 1024 {
            bail!("XCORD_BODY_LIMIT_BYTES must be at least 1024");
        }
        if self.attachment_max_bytes == 0 || self.attachment_max_bytes > 1 << 30 {
            bail!("XCORD_ATTACHMENT_MAX_BYTES must be 1 byte to 1 GiB");
        }
        if self.gateway_identify_secs == 0 {
            bail!("XCORD_GATEWAY_IDENTIFY_SECS must be at least 1");
        }
        if self.header_read_timeout_secs == 0 || self.keepalive_idle_secs == 0 {
            bail!(
                "XCORD_HEADER_READ_TIMEOUT_SECS and XCORD_KEEPALIVE_IDLE_SECS must be at least 1"
            );
        }
        if self.max_connections == Some(0) {
            bail!("XCORD_MAX_CONNECTIONS must be at least 1");
        }
        if self.request_timeout_secs == 0 {
            bail!("XCORD_REQUEST_TIMEOUT_SECS must be at least 1");
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            bail!("token lifetimes must be at least 1 second");
        }
        if self.roles.is_empty() {
            bail!("at least one role must run");
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("xcord.db").display()))
    }

    /// Whether this process runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The base URL for links in e-mails.
    pub fn effective_public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// The URL other nodes reach this one at (voice signaling is forwarded there):
    /// `XCORD_INTERNAL_URL`, else `http://` and the bound HTTP address `bound`; bound to an
    /// unspecified address, the voice public IP or the host's primary address stands in.
    pub fn effective_internal_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.internal_url {
            return url.clone();
        }
        let ip = if bound.ip().is_unspecified() {
            self.voice_public_ip.unwrap_or_else(primary_address)
        } else {
            bound.ip()
        };
        format!("http://{}", SocketAddr::new(ip, bound.port()))
    }

    /// The SFU's media address (SPEC §5 default: the HTTP host, port 50000).
    pub fn voice_listen(&self) -> SocketAddr {
        self.voice_listen.unwrap_or_else(|| {
            let port = if self.listen.port() == 0 { 0 } else { 50000 };
            SocketAddr::new(self.listen.ip(), port)
        })
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// The host's primary address: the source address the kernel would use toward the
/// Internet (connecting a UDP socket sends nothing); loopback when there is none.
fn primary_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((std::net::Ipv4Addr::new(192, 0, 2, 1), 9))
                .map(|()| s)
        })
        .and_then(|s| s.local_addr());
    match probe {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn set_opt<T>(slot: &mut Option<T>, v: Option<T>) {
    if v.is_some() {
        *slot = v;
    }
}

fn parse_num<T: FromStr>(v: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(v.parse::<T>()?)
}

fn parse_ip(v: &str) -> anyhow::Result<std::net::IpAddr> {
    v.trim()
        .parse()
        .with_context(|| format!("expected an IP address such as 203.0.113.7, got {v:?}"))
}

fn parse_listen(v: &str) -> anyhow::Result<SocketAddr> {
    // `localhost:3000` is common in docs and shells; it means the loopback address.
    let v = v.trim();
    let v = v
        .strip_prefix("localhost:")
        .map_or_else(|| v.to_owned(), |port| format!("127.0.0.1:{port}"));
    v.parse()
        .with_context(|| format!("expected HOST:PORT such as 127.0.0.1:3000, got {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = file
            .map(|text| -> anyhow::Result<PathBuf> {
                let p = dir.path().join("xcord.toml");
                std::fs::write(&p, text)?;
                Ok(p)
            })
            .transpose()?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::load_with(path.as_deref(), |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_spec() -> anyhow::Result<()> {
        let c = load(None, &[])?;
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.effective_database_url(), "sqlite://./data/xcord.db");
        assert_eq!(c.node_id, 0);
        assert!(c.rate_limits);
        assert!(!c.require_email_verification);
        assert_eq!(c.password_hash, PasswordHash::Bcrypt(12));
        assert_eq!(c.log, "info");
        assert_eq!(c.gateway_heartbeat_ms, 41_250);
        assert_eq!(c.gateway_resume_secs, 120);
        assert_eq!(c.access_token_ttl_secs, 900);
        assert_eq!(c.refresh_token_ttl_secs, 604_800);
        assert_eq!(c.roles, Role::ALL.to_vec());
        Ok(())
    }

    #[test]
    fn environment_beats_file_beats_defaults() -> anyhow::Result<()> {
        let file = r#"
            listen = "0.0.0.0:4000"
            node_id = 7
            rate_limits = "off"
            log = "debug"
            password_hash = "argon2id"
        "#;
        let c = load(
            Some(file),
            &[("XCORD_NODE_ID", "9"), ("XCORD_LOG", "warn,xcord=trace")],
        )?;
        assert_eq!(c.listen.to_string(), "0.0.0.0:4000");
        assert_eq!(c.node_id, 9);
        assert!(!c.rate_limits);
        assert_eq!(c.log, "warn,xcord=trace");
        assert_eq!(c.password_hash, PasswordHash::Argon2id);
        Ok(())
    }

    #[test]
    fn every_spec_variable_is_honoured() -> anyhow::Result<()> {
        let c = load(
            None,
            &[
                ("XCORD_LISTEN", "127.0.0.1:0"),
                ("XCORD_DATA_DIR", "/tmp/xd"),
                ("XCORD_DATABASE_URL", "postgres://u@127.0.0.1/db"),
                ("XCORD_REDIS_URL", "redis://127.0.0.1:6379"),
                ("XCORD_NODE_ID", "1023"),
                ("XCORD_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
                ("XCORD_RATE_LIMITS", "off"),
                ("XCORD_REQUIRE_EMAIL_VERIFICATION", "true"),
                ("XCORD_PASSWORD_HASH", "bcrypt:4"),
                ("XCORD_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("XCORD_LOG", "debug"),
                ("XCORD_LOG_FORMAT", "json"),
                ("XCORD_GATEWAY_HEARTBEAT_MS", "5000"),
                ("XCORD_GATEWAY_RESUME_SECS", "30"),
            ],
        )?;
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/xd"));
        assert_eq!(c.effective_database_url(), "postgres://u@127.0.0.1/db");
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.node_id, 1023);
        assert_eq!(
            c.jwt_secret.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(!c.rate_limits);
        assert!(c.require_email_verification);
        assert_eq!(c.password_hash, PasswordHash::Bcrypt(4));
        assert_eq!(c.smtp_url.as_deref(), Some("smtp://127.0.0.1:2525"));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(c.gateway_heartbeat_ms, 5000);
        assert_eq!(c.gateway_resume_secs, 30);
        Ok(())
    }

    /// A documented variable, a value other than its default, and how its effect shows.
    type Effect = (&'static str, &'static str, fn(&Config) -> bool);

    /// Every variable the README, docs/ or SPEC §2 tell operators to set.
    const DOCUMENTED: &[Effect] = &[
        ("XCORD_LISTEN", "127.0.0.1:4001", |c| {
            c.listen.port() == 4001
        }),
        ("XCORD_DATA_DIR", "/srv/x", |c| {
            c.data_dir == Path::new("/srv/x")
        }),
        ("XCORD_DATABASE_URL", "postgres://u@h/db", |c| {
            c.effective_database_url() == "postgres://u@h/db"
        }),
        ("XCORD_DATABASE_MAX_CONNECTIONS", "3", |c| {
            c.database_max_connections == 3
        }),
        ("XCORD_REDIS_URL", "redis://127.0.0.1:6379", |c| {
            c.redis_url.as_deref() == Some("redis://127.0.0.1:6379")
        }),
        ("XCORD_REDIS_PREFIX", "blue", |c| c.redis_prefix == "blue"),
        ("XCORD_NODE_ID", "17", |c| c.node_id == 17),
        (
            "XCORD_JWT_SECRET",
            "0123456789abcdef0123456789abcdefXY",
            |c| c.jwt_secret.as_deref() == Some("0123456789abcdef0123456789abcdefXY"),
        ),
        ("XCORD_RATE_LIMITS", "off", |c| !c.rate_limits),
        ("XCORD_RATE_LIMIT_LOGIN", "9/60", |c| {
            c.rate_limit_overrides.get(&Tier::Login)
                == Some(&Limit {
                    max: 9,
                    window_secs: 60,
                })
        }),
        ("XCORD_REQUIRE_EMAIL_VERIFICATION", "on", |c| {
            c.require_email_verification
        }),
        ("XCORD_PASSWORD_HASH", "argon2id", |c| {
            c.password_hash == PasswordHash::Argon2id
        }),
        ("XCORD_SMTP_URL", "smtp://127.0.0.1:2525", |c| {
            c.smtp_url.as_deref() == Some("smtp://127.0.0.1:2525")
        }),
        ("XCORD_LOG", "warn,xcord=debug", |c| {
            c.log == "warn,xcord=debug"
        }),
        ("XCORD_LOG_FORMAT", "json", |c| {
            c.log_format == Some(LogFormat::Json)
        }),
        ("XCORD_VOICE_LISTEN", "127.0.0.1:50100", |c| {
            c.voice_listen == Some(SocketAddr::from(([127, 0, 0, 1], 50100)))
        }),
        ("XCORD_VOICE_PUBLIC_IP", "203.0.113.7", |c| {
            c.voice_public_ip == Some(std::net::IpAddr::from([203, 0, 113, 7]))
        }),
        ("XCORD_GATEWAY_HEARTBEAT_MS", "5000", |c| {
            c.gateway_heartbeat_ms == 5000
        }),
        ("XCORD_GATEWAY_RESUME_SECS", "30", |c| {
            c.gateway_resume_secs == 30
        }),
        ("XCORD_GATEWAY_SEND_QUEUE", "64", |c| {
            c.gateway_send_queue == 64
        }),
        ("XCORD_GATEWAY_REPLAY_EVENTS", "65", |c| {
            c.gateway_replay_events == 65
        }),
        ("XCORD_GATEWAY_IDENTIFY_SECS", "4", |c| {
            c.gateway_identify_secs == 4
        }),
        ("XCORD_HEADER_READ_TIMEOUT_SECS", "3", |c| {
            c.header_read_timeout_secs == 3
        }),
        ("XCORD_KEEPALIVE_IDLE_SECS", "20", |c| {
            c.keepalive_idle_secs == 20
        }),
        ("XCORD_MAX_CONNECTIONS", "500", |c| {
            c.max_connections == Some(500)
        }),
        (
            "XCORD_CORS_ORIGINS",
            "https://a.example, https://b.example",
            |c| c.cors_origins == ["https://a.example", "https://b.example"],
        ),
        ("XCORD_BODY_LIMIT_BYTES", "4096", |c| {
            c.body_limit_bytes == 4096
        }),
        ("XCORD_REQUEST_TIMEOUT_SECS", "7", |c| {
            c.request_timeout_secs == 7
        }),
        ("XCORD_ACCESS_TOKEN_TTL_SECS", "60", |c| {
            c.access_token_ttl_secs == 60
        }),
        ("XCORD_REFRESH_TOKEN_TTL_SECS", "3600", |c| {
            c.refresh_token_ttl_secs == 3600
        }),
        ("XCORD_ROLES", "api,jobs", |c| {
            c.roles == [Role::Api, Role::Jobs]
        }),
        ("XCORD_INTERNAL_URL", "http://10.0.0.5:3000", |c| {
            c.effective_internal_url(c.listen) == "http://10.0.0.5:3000"
        }),
        ("XCORD_PUBLIC_URL", "https://chat.example.org", |c| {
            c.effective_public_url() == "https://chat.example.org"
        }),
        ("XCORD_MAIL_FROM", "Chat <chat@example.org>", |c| {
            c.mail_from == "Chat <chat@example.org>"
        }),
        ("XCORD_ATTACHMENT_MAX_BYTES", "1000", |c| {
            c.attachment_max_bytes == 1000
        }),
        ("XCORD_DEFAULT_SERVER_ID", "4242424242", |c| {
            c.default_server_id == Some(xcord_types::Snowflake::from_i64(4_242_424_242))
        }),
        (
            "XCORD_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            |c| c.amqp_url.as_deref() == Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
        ),
        ("XCORD_AUTO_MESSAGES", "on", |c| c.auto_messages),
        ("XCORD_AUTO_MESSAGES_CRON", "*/10 * * * * *", |c| {
            c.auto_messages_cron == "*/10 * * * * *"
        }),
        ("XCORD_AUTO_MESSAGES_WINDOW_SECS", "60", |c| {
            c.auto_messages_window_secs == 60
        }),
        ("XCORD_AUTO_MESSAGES_POOL", "/srv/pool.txt", |c| {
            c.auto_messages_pool.as_deref() == Some(Path::new("/srv/pool.txt"))
        }),
    ];

    /// SPEC §2's table: the variables external suites drive the server with.
    const SPEC_VARIABLES: &[&str] = &[
        "XCORD_LISTEN",
        "XCORD_DATA_DIR",
        "XCORD_DATABASE_URL",
        "XCORD_REDIS_URL",
        "XCORD_NODE_ID",
        "XCORD_JWT_SECRET",
        "XCORD_RATE_LIMITS",
        "XCORD_REQUIRE_EMAIL_VERIFICATION",
        "XCORD_PASSWORD_HASH",
        "XCORD_SMTP_URL",
        "XCORD_LOG",
        "XCORD_LOG_FORMAT",
        "XCORD_GATEWAY_HEARTBEAT_MS",
        "XCORD_GATEWAY_RESUME_SECS",
        "XCORD_GATEWAY_IDENTIFY_SECS",
    ];

    /// `XCORD_*` names in the README and docs/, less the test suite's own variables.
    fn documented_names() -> anyhow::Result<std::collections::BTreeSet<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("docs"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            for (at, _) in text.match_indices("XCORD_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let name = name.trim_end_matches('_');
                // `XCORD_RATE_LIMIT_<TIER>` is a family; the test sets one member.
                let name = if text[at + name.len()..].starts_with("_<TIER>") {
                    "XCORD_RATE_LIMIT_LOGIN"
                } else {
                    name
                };
                // `XCORD_*` speaks of them all; the test suite's own variables and the
                // file path (tested below) are not settings.
                if name != "XCORD" && !name.starts_with("XCORD_TEST_") && name != "XCORD_CONFIG" {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    #[test]
    fn every_documented_variable_is_read_from_the_environment() -> anyhow::Result<()> {
        let tested: Vec<&str> = DOCUMENTED.iter().map(|(k, _, _)| *k).collect();
        for name in documented_names()? {
            assert!(
                tested.contains(&name.as_str()),
                "{name} is documented but not tested here"
            );
        }
        for name in SPEC_VARIABLES {
            assert!(tested.contains(name), "SPEC's {name} is not tested here");
        }
        let defaults = load(None, &[])?;
        let env: Vec<(&str, &str)> = DOCUMENTED.iter().map(|(k, v, _)| (*k, *v)).collect();
        let c = load(None, &env)?;
        for (name, value, holds) in DOCUMENTED {
            assert!(!holds(&defaults), "{name}: the test value is the default");
            assert!(holds(&c), "{name}={value} had no effect");
        }
        // And each one alone, so no variable's effect hides behind another's.
        for (name, value, holds) in DOCUMENTED {
            let c = load(None, &[(name, value)])?;
            assert!(holds(&c), "{name}={value} alone had no effect");
        }
        Ok(())
    }

    #[test]
    fn the_config_variable_names_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("elsewhere.toml");
        std::fs::write(&path, "node_id = 12\nattachment_max_bytes = 2048")?;
        let c = load(None, &[("XCORD_CONFIG", &path.display().to_string())])?;
        assert_eq!((c.node_id, c.attachment_max_bytes), (12, 2048));
        Ok(())
    }

    #[test]
    fn data_dir_moves_the_default_database() -> anyhow::Result<()> {
        let c = load(None, &[("XCORD_DATA_DIR", "/srv/xcord")])?;
        assert_eq!(c.effective_database_url(), "sqlite:///srv/xcord/xcord.db");
        Ok(())
    }

    #[test]
    fn bad_values_name_their_source() {
        for (k, v, needle) in [
            ("XCORD_NODE_ID", "1024", "0–1023"),
            ("XCORD_NODE_ID", "-1", "XCORD_NODE_ID"),
            ("XCORD_LISTEN", "nowhere", "XCORD_LISTEN"),
            ("XCORD_RATE_LIMITS", "maybe", "XCORD_RATE_LIMITS"),
            ("XCORD_PASSWORD_HASH", "bcrypt:99", "XCORD_PASSWORD_HASH"),
            ("XCORD_PASSWORD_HASH", "md5", "XCORD_PASSWORD_HASH"),
            (
                "XCORD_DATABASE_URL",
                "mysql://x",
                "sqlite:// or postgres://",
            ),
            ("XCORD_REDIS_URL", "http://x", "redis://"),
            ("XCORD_JWT_SECRET", "short", "32 bytes"),
            ("XCORD_LOG_FORMAT", "xml", "XCORD_LOG_FORMAT"),
            ("XCORD_GATEWAY_HEARTBEAT_MS", "10", "at least 50"),
            ("XCORD_ROLES", "api,web", "unknown role"),
            (
                "XCORD_DEFAULT_SERVER_ID",
                "general",
                "XCORD_DEFAULT_SERVER_ID",
            ),
            (
                "XCORD_ATTACHMENT_MAX_BYTES",
                "lots",
                "XCORD_ATTACHMENT_MAX_BYTES",
            ),
            (
                "XCORD_ATTACHMENT_MAX_BYTES",
                "0",
                "XCORD_ATTACHMENT_MAX_BYTES",
            ),
            ("XCORD_MAX_CONNECTIONS", "0", "XCORD_MAX_CONNECTIONS"),
            (
                "XCORD_GATEWAY_IDENTIFY_SECS",
                "0",
                "XCORD_GATEWAY_IDENTIFY_SECS",
            ),
            (
                "XCORD_HEADER_READ_TIMEOUT_SECS",
                "0",
                "XCORD_HEADER_READ_TIMEOUT_SECS",
            ),
        ] {
            let err = load(None, &[(k, v)]).expect_err(k);
            let text = format!("{err:#}");
            assert!(text.contains(needle), "{k}={v}: {text}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = load(Some("lisen = \"127.0.0.1:1\""), &[]).expect_err("typo");
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }

    #[test]
    fn roles_parse() -> anyhow::Result<()> {
        assert_eq!(
            Role::parse_list("api, gateway,api")?,
            vec![Role::Api, Role::Gateway]
        );
        assert!(Role::parse_list(" , ").is_err());
        let c = load(Some("roles = [\"jobs\"]"), &[])?;
        assert_eq!(c.roles, vec![Role::Jobs]);
        Ok(())
    }

    #[test]
    fn a_role_subset_needs_redis() -> anyhow::Result<()> {
        // Every role in one process needs nothing else; so does a subset with Redis.
        load(None, &[])?.check_roles()?;
        load(None, &[("XCORD_ROLES", "jobs,voice,gateway,api")])?.check_roles()?;
        load(
            None,
            &[
                ("XCORD_ROLES", "api"),
                ("XCORD_REDIS_URL", "redis://127.0.0.1:6379"),
            ],
        )?
        .check_roles()?;
        // A subset alone is refused, whether it came from the environment, the file or
        // the command line, and the message says what to do.
        let mut from_flag = load(None, &[])?;
        from_flag.set_roles("gateway")?;
        for c in [
            load(None, &[("XCORD_ROLES", "api,gateway")])?,
            load(Some("roles = [\"voice\"]"), &[])?,
            from_flag,
        ] {
            let err = format!("{:#}", c.check_roles().expect_err("a subset without Redis"));
            assert!(err.contains("XCORD_REDIS_URL"), "{err}");
            assert!(err.contains("Redis"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn rate_limits_can_be_tuned_per_tier() -> anyhow::Result<()> {
        let c = load(
            Some("[rate_limit]\nlogin = \"7/60\""),
            &[("XCORD_RATE_LIMIT_REGISTER", "100/1h")],
        )?;
        assert_eq!(
            c.rate_limit_overrides.get(&Tier::Login),
            Some(&Limit {
                max: 7,
                window_secs: 60
            })
        );
        assert_eq!(
            c.rate_limit_overrides.get(&Tier::Register),
            Some(&Limit {
                max: 100,
                window_secs: 3600
            })
        );
        assert!(load(None, &[("XCORD_RATE_LIMIT_LOGIN", "lots")]).is_err());
        assert!(load(Some("[rate_limit]\nnope = \"1/1\""), &[]).is_err());
        Ok(())
    }

    #[test]
    fn public_url_defaults_to_the_listen_address() -> anyhow::Result<()> {
        assert_eq!(
            load(None, &[])?.effective_public_url(),
            "http://127.0.0.1:3000"
        );
        let c = load(None, &[("XCORD_PUBLIC_URL", "https://chat.example.org/")])?;
        assert_eq!(c.effective_public_url(), "https://chat.example.org");
        Ok(())
    }

    #[test]
    fn internal_url_defaults_to_the_bound_address() -> anyhow::Result<()> {
        let c = load(None, &[])?;
        let bound = SocketAddr::from(([127, 0, 0, 1], 41234));
        assert_eq!(c.effective_internal_url(bound), "http://127.0.0.1:41234");
        // Bound to every address: the voice public IP names the host, else its primary one.
        let any = SocketAddr::from(([0, 0, 0, 0], 3000));
        let c = load(None, &[("XCORD_VOICE_PUBLIC_IP", "10.1.2.3")])?;
        assert_eq!(c.effective_internal_url(any), "http://10.1.2.3:3000");
        let c = load(None, &[])?;
        let url = c.effective_internal_url(any);
        assert!(
            url.starts_with("http://") && url.ends_with(":3000") && !url.contains("0.0.0.0"),
            "{url}"
        );
        let c = load(
            None,
            &[("XCORD_INTERNAL_URL", "http://node-a.internal:3000/")],
        )?;
        assert_eq!(
            c.effective_internal_url(bound),
            "http://node-a.internal:3000"
        );
        assert!(load(None, &[("XCORD_INTERNAL_URL", "node-a:3000")]).is_err());
        Ok(())
    }

    #[test]
    fn localhost_listen_means_loopback() -> anyhow::Result<()> {
        assert_eq!(
            parse_listen("localhost:8080")?.to_string(),
            "127.0.0.1:8080"
        );
        Ok(())
    }
}
