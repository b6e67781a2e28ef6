//! Storage failures, typed so that callers can tell a conflict from an outage.

use thiserror::Error;

/// What went wrong in storage. Never turned into "not found" by callers: a lookup that
/// finds nothing returns `Ok(None)`, and only a real failure is an error.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A unique constraint refused the write; carries the constraint or index name.
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A referenced row does not exist (foreign key) or a check constraint failed.
    #[error("integrity constraint violated: {0}")]
    Integrity(String),
    /// The database could not be reached or timed out handing out a connection.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure (a bug or a corrupt row): logged, opaque to clients.
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if is_sqlite_busy(db.as_ref()) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                let name = db
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| db.message().to_owned());
                match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => StoreError::Conflict(name),
                    sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::CheckViolation
                    | sqlx::error::ErrorKind::NotNullViolation => StoreError::Integrity(name),
                    _ => StoreError::Other(e),
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            _ => StoreError::Other(e),
        }
    }
}

/// SQLite's BUSY or LOCKED (with their extended codes): another writer held the database
/// past the busy timeout. Transient, like a pool that handed out no connection in time, so
/// the client is told to retry (503) rather than shown an internal error.
fn is_sqlite_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .and_then(sqlx::error::DatabaseError::code)
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

impl StoreError {
    /// True for a unique-constraint conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::StoreError;

    /// A write that finds the database locked by another writer past the busy timeout is
    /// "unavailable" (503), not an internal error.
    #[tokio::test]
    async fn a_locked_sqlite_database_is_unavailable_not_an_error() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::from_millis(0));
        let mut holder = SqliteConnection::connect_with(&opts).await.expect("open");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut holder)
            .await
            .expect("create");
        let mut other = SqliteConnection::connect_with(&opts).await.expect("open");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("take the write lock");
        let err = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut other)
            .await
            .expect_err("the database is locked");
        let mapped = StoreError::from(err);
        assert!(matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
        // Any other database failure stays opaque.
        let err = sqlx::query("INSERT INTO missing VALUES (1)")
            .execute(&mut holder)
            .await
            .expect_err("no such table");
        assert!(matches!(StoreError::from(err), StoreError::Other(_)));
    }
}
