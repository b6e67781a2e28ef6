//! Throw-away databases for tests: a temporary SQLite file, or a new PostgreSQL database on
//! the server named by `XCORD_TEST_POSTGRES_URL` (default: the local trust-auth server).
//! A PostgreSQL database is dropped when its [`TestDatabase`] is dropped; ones left behind by a
//! killed test process are dropped by the next run.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _, Row as _};

use crate::Backend;

/// Server used for PostgreSQL test databases unless `XCORD_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PREFIX: &str = "xcord_test_";

/// A fresh, empty database that lives as long as this value.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    backend: Backend,
    dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDatabase {
    /// Makes a new empty database for `backend`. Fails (never skips) when PostgreSQL is
    /// unreachable, so a backend is never silently left out of a test run.
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("creating a temp dir")?;
                let url = format!("sqlite://{}", dir.path().join("xcord.db").display());
                Ok(Self {
                    url,
                    backend,
                    dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let admin = admin_url();
                let mut conn = sqlx::AnyConnection::connect(&admin).await.with_context(|| {
                    format!("PostgreSQL for tests is not reachable at {admin} (set XCORD_TEST_POSTGRES_URL)")
                })?;
                drop_orphans(&mut conn).await;
                static N: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "{PREFIX}{}_{}_{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .with_context(|| format!("creating test database {name}"))?;
                let _ = conn.close().await;
                let url = replace_db_name(&admin, &name);
                Ok(Self {
                    url,
                    backend,
                    dir: None,
                    pg: Some((admin, name)),
                })
            }
        }
    }

    /// The database URL to hand to the server under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// For SQLite, the temporary directory holding the file.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside an async test; a helper thread with its own runtime keeps the
        // caller's runtime out of it.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

fn admin_url() -> String {
    std::env::var("XCORD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned())
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Drops test databases whose creating process is gone (a crashed or killed run).
async fn drop_orphans(conn: &mut sqlx::AnyConnection) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let Ok(rows) = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'xcord_test_%'")
        .fetch_all(&mut *conn)
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else {
            continue;
        };
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::NAME` and `postgres::NAME`,
/// so one test body covers both engines and neither can be skipped quietly.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name($crate::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name($crate::Backend::Postgres).await } )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::replace_db_name;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_db_name("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            replace_db_name("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(replace_db_name("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
