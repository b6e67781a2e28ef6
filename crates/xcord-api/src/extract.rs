//! Extractors whose rejections are SPEC §3 errors: malformed body 400, wrong content type
//! 415, too large 413, a field of the wrong type or missing 422 with per-field `details`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use xcord_core::Error;
use xcord_types::FieldError;

use crate::error::ApiError;

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
            return Err(Error::UnsupportedMediaType(
                "Expected a JSON body with `Content-Type: application/json`.".into(),
            )
            .into());
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json).map_err(ApiError)
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
            return Err(Error::UnsupportedMediaType(
                "Expected no body, or a JSON body with `Content-Type: application/json`.".into(),
            )
            .into());
        }
        parse_json(&bytes).map(OptionalJson).map_err(ApiError)
    }
}

/// The whole body: 413 over the limit, 400 when it cannot be read.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge("The request body is too large.".into())
        } else {
            Error::BadRequest("The request body could not be read.".into())
        }
    })
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
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
/// overall shape is 400; a field that is missing or of the wrong type is 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if xcord_types::error::has_nul_escape(bytes)
        && let Some(field) = nul_field(bytes)
    {
        return Err(nul_error(field));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => data_error(&path, &inner),
            Category::Syntax | Category::Eof | Category::Io => {
                Error::BadRequest(format!("Malformed JSON body: {inner}."))
            }
        }
    })?;
    de.end()
        .map_err(|e| Error::BadRequest(format!("Malformed JSON body: {e}.")))?;
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

fn data_error(path: &str, inner: &serde_json::Error) -> Error {
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
        )]);
    }
    // At the root, or at a bare index of a top-level array, no field is to blame: the body
    // as a whole has the wrong shape (an array where an object belongs, say).
    if path == "." || (path.starts_with('[') && !path.contains('.')) {
        return Error::BadRequest(format!("The JSON body has the wrong shape: {text}."));
    }
    Error::Validation(vec![FieldError::new(path, "type", text)])
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
            return Err(Error::NotFound("resource").into());
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rej) if rej.status().is_client_error() => Err(Error::NotFound("resource").into()),
            Err(rej) => {
                Err(Error::Internal(anyhow::anyhow!("path extraction: {}", rej.body_text())).into())
            }
        }
    }
}

/// Reads the first multipart part that carries a file (or is named one of `names`), refusing
/// more than `limit` bytes with 413 (`too_large` is the message). `Ok(None)` when there is
/// no such part; a body that is not multipart is 415 ("Upload the `noun` as …").
pub async fn read_file_part(
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
    names: &[&str],
    limit: usize,
    too_large: &str,
    noun: &str,
) -> Result<Option<(String, Vec<u8>)>, Error> {
    let over = || Error::PayloadTooLarge(too_large.to_owned());
    let mut mp = multipart.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            over()
        } else {
            Error::UnsupportedMediaType(format!("Upload the {noun} as multipart/form-data."))
        }
    })?;
    let broken = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            over()
        } else {
            Error::BadRequest("The multipart body is malformed.".into())
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
        parse_query(query).map(Query).map_err(ApiError)
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

    fn status_of(r: Result<Body, Error>) -> (&'static str, Vec<String>) {
        match r {
            Ok(_) => ("ok", vec![]),
            Err(Error::BadRequest(_)) => ("400", vec![]),
            Err(Error::Validation(f)) => (
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
