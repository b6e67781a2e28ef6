//! The one error body every failing response carries (SPEC §3).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": "<Short Name>", "message": "<human sentence>", "details": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Short name of the failure, e.g. `Not Found`.
    pub error: String,
    /// A sentence a person can read.
    pub message: String,
    /// Every failed rule, one entry per field and rule: always on a 422, absent otherwise.
    /// (A 429 carries `{retryAfter}` here instead; it is documented as its own body.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<FieldError>)]
    pub details: Option<serde_json::Value>,
}

/// `details` of a 429: how long to wait, the same number as the `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryAfter {
    /// Seconds until a retry can succeed.
    pub retry_after: u64,
}

/// One failed validation rule on one field, listed in a 422's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field in camelCase, dotted for nested fields (`privacy.allowDMs`).
    pub field: String,
    /// The rule that failed, e.g. `length`, `pattern`, `required`, `type`.
    pub rule: String,
    /// What the rule asks for, readable by a person.
    pub message: String,
}

impl FieldError {
    /// A failure of `rule` on `field`.
    pub fn new(
        field: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }
}

/// Whether a JSON text has a `\u0000` escape in it. NUL can reach a JSON string only that
/// way (raw control characters are invalid JSON); PostgreSQL cannot store it in text and
/// SQLite would keep it silently, so it is refused before either sees it.
pub fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'\\') {
        let at = i + off;
        match bytes.get(at + 1) {
            Some(b'u') if bytes.get(at + 2..at + 6) == Some(b"0000") => return true,
            // Any other escape, `\\` included, is skipped whole.
            Some(_) => i = at + 2,
            None => return false,
        }
        if i >= bytes.len() {
            return false;
        }
    }
    false
}
