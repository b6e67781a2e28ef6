//! `/cdn/…`: uploaded files.
//!
//! Profile images and server icons (`avatars/`, `banners/`, `icons/`) are public and named by
//! content hash, so they are cached for a year. Message attachments (`attachments/…`) are
//! served only with a valid, unexpired signature in the URL (handed out in message payloads
//! to those who can read the channel), support byte ranges, and are cached privately until
//! the link expires.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use xcord_core::media::content_type_for;
use xcord_core::storage::is_valid_key;
use xcord_core::{Denial, Entity, Error};
use xcord_types::Snowflake;

use crate::AppState;
use crate::error::{ApiError, error_response};
use crate::extract::Path;

/// `GET /cdn/{*key}`.
#[utoipa::path(get, path = "/cdn/{key}", tag = "users",
    params(("key" = String, Path, description = "File key, e.g. avatars/1/ab.png or attachments/ID/NAME?ex=…&sig=…")),
    responses((status = 200, description = "The file"), (status = 206, description = "Part of the file"), (status = 304, description = "Not modified"),
        (status = 403, description = "Attachment link invalid or expired", body = xcord_types::ErrorBody),
        (status = 404, description = "No such file", body = xcord_types::ErrorBody)))]
pub async fn get_file(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(rest) = key.strip_prefix("attachments/") {
        return attachment(&s, rest, &q, &headers).await;
    }
    // A key that cannot name a stored file is 404 before anything else, as it always was.
    if !is_valid_key(&key) {
        return Err(Error::NotFound(Entity::File).into());
    }
    let path = std::path::Path::new(&key);
    let etag = path
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| format!("\"{s}\""))
        .unwrap_or_default();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let Some(stored) = s.core.open_public_file(&key).await? else {
        return Err(Error::NotFound(Entity::File).into());
    };
    let len = stored.len;
    let mut res = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(
        stored.reader,
    )));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type_for(path)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Images may be embedded by any client origin.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    Ok(res)
}

/// A single `bytes=` range of a file of `len` bytes: `Ok(None)` for no (or an ignored
/// multi-part) range, `Err(())` when it cannot be satisfied.
fn parse_range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (from, "") => (from.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (from, to) => (
            from.parse().map_err(|_| ())?,
            to.parse::<u64>()
                .map_err(|_| ())?
                .min(len.saturating_sub(1)),
        ),
    };
    if len == 0 || start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn attachment(
    s: &AppState,
    rest: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (id, _name) = rest.split_once('/').unwrap_or((rest, ""));
    let id: Snowflake = id.parse().map_err(|_| Error::NotFound(Entity::File))?;
    let (Some(ex), Some(sig)) = (q.get("ex"), q.get("sig")) else {
        return Err(Error::Denied(Denial::InvalidSignedLink).into());
    };
    let a = s.core.verify_attachment_url(id, ex, sig).await?;
    let Some(mut stored) = s.core.open_attachment(&a).await? else {
        return Err(Error::NotFound(Entity::File).into());
    };
    let len = stored.len;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => match parse_range(v, len) {
            Ok(r) => r,
            Err(()) => {
                let mut res = error_response(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "The requested range is outside the file.".into(),
                    None,
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(res);
            }
        },
    };
    let (status, start, end) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    stored
        .reader
        .seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(stored.reader.take(count)));
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    let ct = HeaderValue::from_str(&a.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    let expires_in =
        i64::from_str_radix(ex, 16).unwrap_or(0) - s.core.clock.now().as_millis() / 1000;
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={}", expires_in.max(0))) {
        h.insert(header::CACHE_CONTROL, v);
    }
    // Media shows inline; anything else downloads, and nothing uploaded can run scripts here.
    let inline = ["image/", "video/", "audio/"]
        .iter()
        .any(|p| a.content_type.starts_with(p));
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        a.filename
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-2", 100), Err(()));
        assert_eq!(parse_range("bytes=x-2", 100), Err(()));
        assert_eq!(parse_range("bytes=-0", 100), Err(()));
    }
}
