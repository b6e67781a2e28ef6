//! Extractors: the HTTP parsing that happens before a use-case runs. Their rejections are
//! [`RequestError`]s (malformed body, wrong content type, too large, bad `If-Match`) or, for
//! a field of the wrong type or missing, a domain validation failure naming the field; the
//! table in [`crate::error`] gives each its status.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use xcord_core::{Error, Upload};
use xcord_types::FieldError;

use crate::error::{ApiError, RequestError};

/// A JSON body. Requires `Content-Type: application/json` (or `…+json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(req.headers()) {
            return Err(RequestError::NotJson.into());
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// An optional JSON body: an empty (or all-whitespace) body is `T::default()`; anything else
/// must be JSON like [`Json`]'s, with the same 415, 413, 400 and 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = is_json_content_type(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !is_json {
            return Err(RequestError::NotJsonOrEmpty.into());
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The whole body: too large over the limit, unreadable when it cannot be read.
pub(crate) async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Bytes, RequestError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RequestError::BodyTooLarge
        } else {
            RequestError::UnreadableBody
        }
    })
}

pub(crate) fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses a JSON document into `T`, classifying failures: bad syntax or a body of the wrong
/// overall shape is a [`RequestError`]; a field that is missing or of the wrong type is a
/// validation failure naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if xcord_types::error::has_nul_escape(bytes)
        && let Some(field) = nul_field(bytes)
    {
        return Err(nul_error(field).into());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => data_error(&path, &inner),
            Category::Syntax | Category::Eof | Category::Io => {
                RequestError::MalformedJson(inner.to_string()).into()
            }
        }
    })?;
    de.end()
        .map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// The path of the first string (or object key) holding NUL, when the text parses.
fn nul_field(bytes: &[u8]) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &mut String) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            serde_json::Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k.replace('\0', "\\u0000"));
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let mut path = String::new();
    walk(&value, &mut path).then(|| if path.is_empty() { "body".into() } else { path })
}

fn nul_error(field: String) -> Error {
    Error::Validation(vec![FieldError::new(
        field,
        "noNul",
        "must not contain the NUL character (U+0000)",
    )])
}

fn data_error(path: &str, inner: &serde_json::Error) -> ApiError {
    let text = inner.to_string();
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let full = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return Error::Validation(vec![FieldError::new(
            full,
            "required",
            "This field is required.",
        )])
        .into();
    }
    // At the root, or at a bare index of a top-level array, no field is to blame: the body
    // as a whole has the wrong shape (an array where an object belongs, say).
    if path == "." || (path.starts_with('[') && !path.contains('.')) {
        return RequestError::WrongShape(text.to_owned()).into();
    }
    Error::Validation(vec![FieldError::new(path, "type", text)]).into()
}

/// Path parameters. A parameter that does not parse (e.g. a malformed id) names nothing
/// that exists, so it is a 404.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // A segment holding NUL names nothing that can exist (no stored text has one).
        if contains_encoded_nul(parts.uri.path()) {
            return Err(RequestError::UnknownResource.into());
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rej) if rej.status().is_client_error() => Err(RequestError::UnknownResource.into()),
            Err(rej) => {
                Err(Error::Internal(anyhow::anyhow!("path extraction: {}", rej.body_text())).into())
            }
        }
    }
}

/// Reads the first multipart part that carries a file (or is named one of `names`), refusing
/// an `upload` of more than `limit` bytes as too large. `Ok(None)` when there is no such
/// part; a body that is not multipart is [`RequestError::NotMultipart`].
pub async fn read_file_part(
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
    names: &[&str],
    upload: Upload,
    limit: usize,
) -> Result<Option<(String, Vec<u8>)>, ApiError> {
    let over = || -> ApiError {
        Error::TooLarge {
            upload,
            limit_bytes: limit,
        }
        .into()
    };
    let mut mp = multipart.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            over()
        } else {
            RequestError::NotMultipart(upload).into()
        }
    })?;
    let broken = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            over()
        } else {
            RequestError::MalformedMultipart.into()
        }
    };
    while let Some(mut field) = mp.next_field().await.map_err(broken)? {
        let named = field.name().is_some_and(|n| names.contains(&n));
        if !named && field.file_name().is_none() {
            continue;
        }
        // NUL cannot be stored as text; it never belongs in a file name anyway.
        let filename = field.file_name().unwrap_or("file").replace('\0', "");
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            if bytes.len() + chunk.len() > limit {
                return Err(over());
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Some((filename, bytes)));
    }
    Ok(None)
}

/// Query-string parameters; a value of the wrong type is a 422 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        parse_query(query).map(Query).map_err(ApiError::Core)
    }
}

fn contains_encoded_nul(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w == b"%00")
}

/// Parses a query string into `T`.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    if contains_encoded_nul(query)
        && let Some((key, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(nul_error(key.replace('\0', "\\u0000")));
    }
    let de = form_urlencoded_parse(query);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let text = e.into_inner().to_string();
        if let Some(field) = text
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            return Error::invalid(field, "required", "This parameter is required.");
        }
        let field = if path == "." {
            "query".to_owned()
        } else {
            path
        };
        Error::Validation(vec![FieldError::new(field, "type", text)])
    })
}

/// Parses an `If-Match` header value: the entity's version, optionally quoted or weak
/// (`7`, `"7"`, `W/"7"`). The use-case receives the number.
pub fn parse_if_match(v: &str) -> Result<i64, RequestError> {
    let t = v.trim().trim_start_matches("W/").trim_matches('"');
    t.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or(RequestError::IfMatchNotVersion)
}

fn form_urlencoded_parse(query: &str) -> serde_urlencoded::de::Deserializer<'_> {
    // serde_urlencoded parses from bytes itself; this keeps the call site readable.
    serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        user_name: String,
        limit: Option<u32>,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Nested {
        allow_dms: bool,
    }

    fn status_of(r: Result<Body, ApiError>) -> (&'static str, Vec<String>) {
        match r {
            Ok(_) => ("ok", vec![]),
            Err(ApiError::Request(
                RequestError::MalformedJson(_) | RequestError::WrongShape(_),
            )) => ("400", vec![]),
            Err(ApiError::Core(Error::Validation(f))) => (
                "422",
                f.into_iter()
                    .map(|f| format!("{}:{}", f.field, f.rule))
                    .collect(),
            ),
            Err(_) => ("other", vec![]),
        }
    }

    #[test]
    fn json_failures_are_classified() {
        assert_eq!(status_of(parse_json(br#"{"userName":"a"}"#)).0, "ok");
        assert_eq!(
            status_of(parse_json(br#"{"userName":"a","extra":1}"#)).0,
            "ok"
        );
        assert_eq!(status_of(parse_json(b"{\"userName\":")).0, "400");
        assert_eq!(status_of(parse_json(b"")).0, "400");
        assert_eq!(status_of(parse_json(b"not json")).0, "400");
        assert_eq!(
            status_of(parse_json(br#"{"userName":"a"} trailing"#)).0,
            "400"
        );
        assert_eq!(status_of(parse_json(b"[1,2]")).0, "400");
        assert_eq!(
            status_of(parse_json(b"{}")),
            ("422", vec!["userName:required".into()])
        );
        assert_eq!(
            status_of(parse_json(br#"{"userName":5}"#)),
            ("422", vec!["userName:type".into()])
        );
        assert_eq!(
            status_of(parse_json(br#"{"userName":"a","limit":-1}"#)),
            ("422", vec!["limit:type".into()])
        );
        assert_eq!(
            status_of(parse_json(
                br#"{"userName":"a","nested":{"allowDms":"yes"}}"#
            )),
            ("422", vec!["nested.allowDms:type".into()])
        );
        assert_eq!(
            status_of(parse_json(br#"{"userName":"a","nested":{}}"#)),
            ("422", vec!["nested.allowDms:required".into()])
        );
    }

    #[test]
    fn nul_in_any_string_is_a_field_failure() {
        assert_eq!(
            status_of(parse_json(br#"{"userName":"a\u0000b"}"#)),
            ("422", vec!["userName:noNul".into()])
        );
        assert_eq!(
            status_of(parse_json(
                br#"{"userName":"a","nested":{"allowDms":true,"x":["ok","\u0000"]}}"#
            )),
            ("422", vec!["nested.x[1]:noNul".into()])
        );
        // An escaped backslash followed by `u0000` is text, not NUL.
        assert_eq!(status_of(parse_json(br#"{"userName":"a\\u0000"}"#)).0, "ok");
        assert!(!xcord_types::error::has_nul_escape(br#"{"a":"\\u0000\\"}"#));
        assert!(xcord_types::error::has_nul_escape(br#"{"a":"\\\u0000"}"#));
        match parse_query::<Paging>("q=a%00b&limit=5") {
            Err(Error::Validation(f)) => {
                assert_eq!((f[0].field.as_str(), f[0].rule.as_str()), ("q", "noNul"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Paging {
        limit: Option<u8>,
        before: Option<xcord_types::Snowflake>,
    }

    #[test]
    fn query_failures_name_the_parameter() {
        assert!(parse_query::<Paging>("limit=50&before=123").is_ok());
        assert!(parse_query::<Paging>("").is_ok());
        match parse_query::<Paging>("limit=abc") {
            Err(Error::Validation(f)) => assert_eq!(f[0].field, "limit"),
            other => panic!("{other:?}"),
        }
        match parse_query::<Paging>("before=-5") {
            Err(Error::Validation(f)) => assert_eq!(f[0].field, "before"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn if_match_takes_plain_quoted_and_weak_versions() {
        for v in ["7", "\"7\"", "W/\"7\"", " 7 "] {
            assert_eq!(parse_if_match(v), Ok(7), "{v}");
        }
        for v in ["", "-1", "abc", "\"7.5\"", "*"] {
            assert_eq!(
                parse_if_match(v),
                Err(RequestError::IfMatchNotVersion),
                "{v}"
            );
        }
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json_content_type(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            h.insert(CONTENT_TYPE, ct.parse().expect("header"));
            assert_eq!(is_json_content_type(&h), ok, "{ct}");
        }
    }
}
