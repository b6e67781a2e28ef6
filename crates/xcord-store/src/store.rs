use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor as _, Row as _, Transaction};

use crate::{StoreError, StoreResult, migrations};

/// Which database engine a [`Store`] talks to, chosen by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: the embedded default, one file in the data directory.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: scale mode.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if any.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Tuning for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the store reports itself unavailable.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits on a locked database.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Pool occupancy, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: usize,
}

/// The database: a connection pool and the backend it runs on. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Write transactions queue here, in arrival order. SQLite has one writer at a time:
    /// one slot, so writers wait here rather than in SQLite's busy handler, which sleeps in
    /// growing steps (up to 100 ms) between retries and so turns contention into long tail
    /// latency. PostgreSQL gets half the pool: a use-case's unit of work holds its write
    /// connection while it reads through the pool, so some connections must stay free for
    /// reads or busy writers would wait on each other until the acquire timeout.
    write_slots: Arc<tokio::sync::Semaphore>,
    /// The group committer of new messages, started on first use, ended by [`Store::close`].
    posts: Arc<crate::group_commit::Committer>,
}

/// A write transaction. Dereferences to the connection (use `&mut *tx` as the executor);
/// end it with [`WriteTx::commit`] or [`WriteTx::rollback`] (dropping it rolls back).
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl WriteTx {
    /// Commits, then lets the next writer in.
    pub async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Rolls back, then lets the next writer in.
    pub async fn rollback(self) -> StoreResult<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`). A SQLite file and its parent
    /// directory are created when missing. Does not run migrations: see [`Store::migrate`].
    pub async fn connect(url: &str, opts: &StoreOptions) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).with_context(|| {
            format!(
                "unsupported database URL {:?}: expected sqlite://PATH or postgres://…",
                redact_url(url)
            )
        })?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let connect_opts = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("invalid database URL {:?}", redact_url(&url)))?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout);
        if backend == Backend::Sqlite {
            let busy_ms = opts.busy_timeout.as_millis().min(i64::MAX as u128) as i64;
            pool = pool.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // Every connection needs these; SQLite does not persist them (except WAL).
                    // synchronous=NORMAL in WAL mode keeps every committed transaction across
                    // a process crash (kill -9); only a power loss can drop the last commits.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA busy_timeout = {busy_ms}"
                    )))
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(connect_opts)
            .await
            .with_context(|| format!("cannot open the {} database", backend.name()))?;
        let slots = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => (opts.max_connections as usize / 2).max(1),
        };
        Ok(Self {
            pool,
            backend,
            write_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            posts: Arc::default(),
        })
    }

    /// The queue of the message group committer (started on first use).
    pub(crate) fn post_queue(&self) -> &tokio::sync::mpsc::Sender<crate::group_commit::Job> {
        self.posts.queue(self)
    }

    /// Applies every embedded migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &migrations::SQLITE,
            Backend::Postgres => &migrations::POSTGRES,
        };
        migrator
            .run(&self.pool)
            .await
            .context("running database migrations")
    }

    /// Versions of the migrations applied to this database, in order.
    pub async fn applied_migrations(&self) -> StoreResult<Vec<i64>> {
        let rows =
            sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = $1 ORDER BY version")
                .bind(true)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for repository implementations.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Pool occupancy.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
        }
    }

    /// Begins a transaction that will write. It first waits for a writer's slot among this
    /// process's writers; on SQLite it then takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so it neither fails on a lock upgrade nor sleeps in the busy handler.
    pub async fn begin_write(&self) -> StoreResult<WriteTx> {
        let turn = self
            .write_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _turn: turn })
    }

    /// The right side of `x IN …` for ids bound with [`ids_json`] in parameter `$n`.
    pub(crate) fn in_ids_at(&self, n: u8) -> String {
        match self.backend {
            Backend::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
            Backend::Postgres => format!("(SELECT jsonb_array_elements_text(${n}::jsonb)::bigint)"),
        }
    }

    /// Reads a flag column: PostgreSQL `BOOLEAN`, SQLite `INTEGER` 0/1.
    pub fn flag(&self, row: &AnyRow, column: &str) -> StoreResult<bool> {
        Ok(match self.backend {
            Backend::Postgres => row.try_get::<bool, _>(column)?,
            Backend::Sqlite => row.try_get::<i64, _>(column)? != 0,
        })
    }

    /// Ends the message committer once it has written every queued post, then closes every
    /// connection (pending work finishes first). Posts that come after this fail.
    pub async fn close(&self) {
        self.posts.stop().await;
        self.pool.close().await;
    }
}

/// A list of ids as one JSON array, bound as a single parameter (see [`Store::in_ids_at`]):
/// one statement and one round trip whatever the count.
pub(crate) fn ids_json(ids: &[xcord_types::Snowflake]) -> StoreResult<String> {
    serde_json::to_string(&ids.iter().map(|i| i.get()).collect::<Vec<_>>())
        .map_err(|e| StoreError::Other(sqlx::Error::Encode(Box::new(e))))
}

/// `sqlite://PATH` → the same URL with `mode=rwc`, after creating PATH's directory.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or_default();
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!("the SQLite URL needs a file path (sqlite://PATH)");
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the database directory {}", dir.display()))?;
    }
    let query = if query.split('&').any(|kv| kv.starts_with("mode=")) {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// A URL with its password replaced, safe to log.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..s], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_chooses_backend() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
        assert_eq!(Backend::from_url("nonsense"), None);
    }

    #[test]
    fn sqlite_urls_get_create_mode() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("xcord-url-{}", std::process::id()));
        let path = dir.join("a.db");
        let url = prepare_sqlite_url(&format!("sqlite://{}", path.display()))?;
        assert_eq!(url, format!("sqlite://{}?mode=rwc", path.display()));
        assert!(dir.is_dir());
        let kept = prepare_sqlite_url(&format!("sqlite://{}?mode=ro", path.display()))?;
        assert!(kept.ends_with("?mode=ro"));
        assert!(prepare_sqlite_url("sqlite://").is_err());
        assert!(prepare_sqlite_url("sqlite://:memory:").is_err());
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
