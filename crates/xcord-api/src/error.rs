//! The one table from failures to HTTP responses (SPEC §3).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xcord_core::Error;
use xcord_types::{ErrorBody, RetryAfter};

/// A failed request. Wraps a domain [`Error`]; its `IntoResponse` is the single place that
/// decides status codes and bodies.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// The short name used in `error` for a status.
pub fn short_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        422 => "Validation Error",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        s if s >= 500 => "Internal Server Error",
        _ => "Error",
    }
}

/// A default sentence for a status, used when a layer (not a handler) produced the error.
pub fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood.",
        401 => "Authentication is required.",
        403 => "You are not allowed to do this.",
        404 => "The requested resource was not found.",
        405 => "This method is not allowed on this route.",
        408 | 504 => "The request took too long.",
        413 => "The request body is too large.",
        415 => "The request has an unsupported content type.",
        416 => "The requested range is outside the file.",
        429 => "You are being rate limited.",
        503 => "The service is temporarily unavailable.",
        _ => "An internal error occurred.",
    }
}

/// Builds an error response with the SPEC body.
pub fn error_response(
    status: StatusCode,
    message: String,
    details: Option<serde_json::Value>,
) -> Response {
    let body = ErrorBody {
        error: short_name(status).to_owned(),
        message,
        details,
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, details) = match self.0 {
            Error::BadRequest(m) => (StatusCode::BAD_REQUEST, m, None),
            Error::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m, None),
            Error::Forbidden(m) => (StatusCode::FORBIDDEN, m, None),
            Error::NotFound(what) => (StatusCode::NOT_FOUND, format!("Unknown {what}."), None),
            Error::Conflict(m) => (StatusCode::CONFLICT, m, None),
            Error::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m, None),
            Error::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m, None),
            Error::Validation(fields) => {
                let message = match fields.as_slice() {
                    [one] => format!("Invalid {}: {}", one.field, one.message),
                    _ => format!("{} fields are invalid.", fields.len()),
                };
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    message,
                    serde_json::to_value(fields).ok(),
                )
            }
            Error::RateLimited {
                retry_after_secs,
                limit,
            } => {
                let mut res = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("You are being rate limited; retry in {retry_after_secs} s."),
                    serde_json::to_value(RetryAfter {
                        retry_after: retry_after_secs,
                    })
                    .ok(),
                );
                let h = res.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                h.insert("x-ratelimit-limit", HeaderValue::from(limit));
                h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
                h.insert("x-ratelimit-reset", HeaderValue::from(retry_after_secs));
                return res;
            }
            Error::Unavailable(e) => {
                tracing::warn!(error = format!("{e:#}"), "dependency unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    default_message(StatusCode::SERVICE_UNAVAILABLE).into(),
                    None,
                )
            }
            Error::Internal(e) => {
                // The whole chain goes to the log inside the request span; the client only
                // learns that something failed.
                tracing::error!(error = format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    default_message(StatusCode::INTERNAL_SERVER_ERROR).into(),
                    None,
                )
            }
        };
        error_response(status, message, details)
    }
}

/// Answer for routes that do not exist.
pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        default_message(StatusCode::NOT_FOUND).into(),
        None,
    )
}
