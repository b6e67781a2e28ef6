//! `/cdn/…`: uploaded profile images, served with their type, length and long-lived caching
//! (file names are content hashes, so a URL never changes meaning).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xcord_core::Error;
use xcord_core::media::{content_type_for, resolve_cdn_path};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Path;

/// `GET /cdn/{*key}`.
#[utoipa::path(get, path = "/cdn/{key}", tag = "users", params(("key" = String, Path, description = "File key, e.g. avatars/1/ab.png")),
    responses((status = 200, description = "The file"), (status = 304, description = "Not modified"),
        (status = 404, description = "No such file", body = xcord_types::ErrorBody)))]
pub async fn get_file(
    State(s): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = resolve_cdn_path(&s.core.settings.cdn_dir, &key).ok_or(Error::NotFound("file"))?;
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
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound("file").into());
        }
        Err(e) => return Err(Error::Internal(e.into()).into()),
    };
    let mut res = Response::new(Body::from(bytes));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type_for(&path)),
    );
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
