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

impl StoreError {
    /// True for a unique-constraint conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}
