//! Middleware applied to every response: request ids, security headers, metrics, and the
//! rewrite of any non-JSON error (from a layer rather than a handler) into the SPEC body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONNECTION, CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{default_message, error_response};

/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, as stored in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Takes a sane client-sent `X-Request-Id` or makes a new one, records it in the request's
/// span and echoes it on the response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| is_acceptable_request_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    res.headers_mut().insert(REQUEST_ID.clone(), id);
    res
}

/// Client ids are echoed and logged, so only short, printable tokens are kept.
fn is_acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_request_id() -> HeaderValue {
    let bytes: [u8; 16] = rand::random();
    // Hex is always a valid header value.
    HeaderValue::from_str(&hex::encode(bytes)).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The Content-Security-Policy for API responses: nothing may be loaded or framed.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
/// The Content-Security-Policy for the docs page: its own scripts, styles and images only.
pub const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Security headers on every response; HSTS only when the request came over TLS through a
/// proxy that says so (`X-Forwarded-Proto: https`), since HSTS over plain HTTP is ignored
/// and misleading.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let over_tls = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let docs = req.uri().path().starts_with("/api/docs");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry("x-content-type-options")
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry("x-frame-options")
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry("referrer-policy")
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry("content-security-policy")
        .or_insert(HeaderValue::from_static(if docs {
            DOCS_CSP
        } else {
            API_CSP
        }));
    h.entry("cross-origin-opener-policy")
        .or_insert(HeaderValue::from_static("same-origin"));
    if over_tls {
        h.entry("strict-transport-security")
            .or_insert(HeaderValue::from_static(
                "max-age=31536000; includeSubDomains",
            ));
    }
    res
}

/// Rewrites error responses that are not JSON (made by axum or a tower layer: 405, 408,
/// 413, a caught panic) into the SPEC error body, keeping status and headers. The HTML
/// account pages answer their errors as pages, for a person, and are left alone.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_page = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    if is_json(&res) || is_page {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let fresh = error_response(status, default_message(status).into(), None);
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, fresh_parts.headers[CONTENT_TYPE].clone());
    Response::from_parts(parts, body)
}

/// Longest request target (path and query) accepted; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request head (request line and header lines) accepted; larger ones get 431.
/// Below the HTTP server's own buffer, so these answers carry the JSON body.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Refuses request targets and heads over the limits with the SPEC error body. hyper
/// refuses larger ones itself, with no body (docs/architecture.md).
pub async fn head_limits(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return error_response(
            StatusCode::URI_TOO_LONG,
            format!("The request target is longer than {MAX_URI_BYTES} bytes."),
            None,
        );
    }
    // Each header line costs its name, value, ": " and CRLF, as on the wire.
    let head = target
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > MAX_HEAD_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("The request headers are larger than {MAX_HEAD_BYTES} bytes."),
            None,
        );
    }
    next.run(req).await
}

/// Whether a request's handler is waiting for body data from the client right now.
#[derive(Debug, Default)]
struct BodyWait(AtomicBool);

/// A request body that records when its reader waits on the client.
struct WatchedBody {
    body: Body,
    wait: Arc<BodyWait>,
}

impl http_body::Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.body).poll_frame(cx);
        self.wait.0.store(r.is_pending(), Ordering::Relaxed);
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Sits outside the request timeout and tells a client's fault from ours: when the
/// timeout fires while the handler is waiting for body bytes that the client announced and
/// does not send, the answer is 408 (and the connection closes), not 503.
pub async fn body_stalls_are_408(req: Request, next: Next) -> Response {
    let wait = Arc::new(BodyWait::default());
    let watched = wait.clone();
    let req = req.map(|body| {
        Body::new(WatchedBody {
            body,
            wait: watched,
        })
    });
    let res = next.run(req).await;
    let timed_out = res.status() == StatusCode::SERVICE_UNAVAILABLE && !is_json(&res);
    if timed_out && wait.0.load(Ordering::Relaxed) {
        let mut res = error_response(
            StatusCode::REQUEST_TIMEOUT,
            "The request body did not arrive in time.".into(),
            None,
        );
        // The rest of the body may still come; the connection cannot be reused.
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    res
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Counts requests and times them by method, matched route and status.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    // The route template, never the raw path, so ids do not explode label cardinality.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    res
}

/// The response of a request that panicked: logged, answered with an opaque 500.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        default_message(StatusCode::INTERNAL_SERVER_ERROR).into(),
        None,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_bounded_and_printable() {
        assert!(is_acceptable_request_id(b"abc-123_x.y:z"));
        assert!(!is_acceptable_request_id(b""));
        assert!(!is_acceptable_request_id(b"has space"));
        assert!(!is_acceptable_request_id(b"new\nline"));
        assert!(!is_acceptable_request_id(&[b'a'; 129]));
        assert_eq!(new_request_id().len(), 32);
    }
}
