//! Domain errors. Each variant has exactly one HTTP status (see the API crate's table).

use xcord_store::StoreError;
use xcord_types::FieldError;

/// Result of a use-case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a use-case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be understood (malformed body or parameter).
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials: missing, malformed, expired or revoked token.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not permitted.
    #[error("{0}")]
    Forbidden(String),
    /// Does not exist, or the caller may not know that it exists. Carries the kind of
    /// thing that was looked for, e.g. `"channel"`.
    #[error("unknown {0}")]
    NotFound(&'static str),
    /// Clashes with the current state: a taken name, a stale `If-Match`.
    #[error("{0}")]
    Conflict(String),
    /// The body or upload is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's content type is not one this route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but breaking rules; one entry per failed field rule.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Too many requests; try again after this many seconds.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
        /// The budget of the window that is spent.
        limit: u32,
    },
    /// A dependency (database, Redis) is down or saturated; retry later.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure. Logged whole, shown to the client as an opaque 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// A 422 with a single failed rule.
    pub fn invalid(field: &str, rule: &str, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, rule, message)])
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // A use-case that expects a conflict maps it to a precise message itself; one
            // that reaches here unexpected still is the client's clash, not a server fault.
            StoreError::Conflict(_) => Error::Conflict("the resource already exists".into()),
            StoreError::Unavailable(_) => Error::Unavailable(anyhow::Error::new(e)),
            StoreError::Integrity(_) | StoreError::Other(_) => {
                Error::Internal(anyhow::Error::new(e))
            }
        }
    }
}
