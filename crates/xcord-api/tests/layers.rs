//! The middleware stack and extractors, driven through real handlers: every failure a client
//! can cause comes back as the SPEC error body with the right status, never a bare 500.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use xcord_api::extract::{Json, Path, Query};
use xcord_api::{HttpSettings, apply_layers};
use xcord_types::Snowflake;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateThing {
    name: String,
    count: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    limit: Option<u8>,
}

async fn boom() -> &'static str {
    panic!("kaboom with secret internals")
}

fn settings() -> HttpSettings {
    HttpSettings {
        cors_origins: vec!["https://app.example".into()],
        body_limit: 2048,
        request_timeout: Duration::from_millis(300),
        serve_rest: true,
    }
}

fn app() -> Router {
    let routes = Router::new()
        .route(
            "/things",
            post(|Json(b): Json<CreateThing>| async move {
                axum::Json(json!({ "name": b.name, "count": b.count }))
            }),
        )
        .route(
            "/things/{id}",
            get(|Path(id): Path<Snowflake>| async move { axum::Json(json!({ "id": id })) }),
        )
        .route(
            "/list",
            get(|Query(p): Query<Paging>| async move { axum::Json(json!({ "limit": p.limit })) }),
        )
        .route("/boom", get(boom))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .fallback(xcord_api::error::not_found);
    apply_layers(routes, &settings()).expect("layers")
}

async fn send(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = app().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, headers, body)
}

fn post_json(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).expect("request")
}

fn assert_error_shape(body: &Value, error: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_good_body_passes() {
    let (s, _, b) = send(post_json(
        "/things",
        Some("application/json"),
        r#"{"name":"x","count":2}"#,
    ))
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!({ "name": "x", "count": 2 }));
}

#[tokio::test]
async fn malformed_json_is_400() {
    for body in ["{\"name\":", "nope", "", "{\"name\":\"x\"} extra", "[]"] {
        let (s, _, b) = send(post_json("/things", Some("application/json"), body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body:?}");
        assert_error_shape(&b, "Bad Request");
    }
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (s, _, b) = send(post_json("/things", ct, r#"{"name":"x"}"#)).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_error_shape(&b, "Unsupported Media Type");
    }
}

#[tokio::test]
async fn field_errors_are_422_with_details() {
    let (s, _, b) = send(post_json(
        "/things",
        Some("application/json"),
        r#"{"count":1}"#,
    ))
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_shape(&b, "Validation Error");
    assert_eq!(b["details"][0]["field"], "name");
    assert_eq!(b["details"][0]["rule"], "required");

    let (s, _, b) = send(post_json(
        "/things",
        Some("application/json"),
        r#"{"name":"x","count":"many"}"#,
    ))
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["details"][0]["field"], "count");
    assert_eq!(b["details"][0]["rule"], "type");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(4096));
    let (s, _, b) = send(post_json("/things", Some("application/json"), big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(&b, "Payload Too Large");
}

#[tokio::test]
async fn malformed_ids_in_paths_are_404() {
    let (s, _, b) = send(
        Request::get("/things/123")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!((s, b["id"].clone()), (StatusCode::OK, json!("123")));
    for bad in ["abc", "-1", "99999999999999999999"] {
        let (s, _, b) = send(
            Request::get(format!("/things/{bad}"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}");
        assert_error_shape(&b, "Not Found");
    }
}

#[tokio::test]
async fn bad_query_values_are_422_naming_the_parameter() {
    let (s, _, b) = send(
        Request::get("/list?limit=500")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["details"][0]["field"], "limit");
    let (s, _, b) = send(
        Request::get("/list?limit=5")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!((s, b), (StatusCode::OK, json!({ "limit": 5 })));
}

#[tokio::test]
async fn a_panic_is_an_opaque_500_and_leaks_nothing() {
    let (s, _, b) = send(Request::get("/boom").body(Body::empty()).expect("req")).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_error_shape(&b, "Internal Server Error");
    let text = b.to_string();
    assert!(
        !text.contains("kaboom") && !text.contains("secret") && !text.contains(".rs"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_requests_time_out_with_the_error_shape() {
    let started = std::time::Instant::now();
    let (s, _, b) = send(Request::get("/slow").body(Body::empty()).expect("req")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_error_shape(&b, "Service Unavailable");
}

#[tokio::test]
async fn method_not_allowed_keeps_allow_and_gets_the_shape() {
    let (s, h, b) = send(Request::delete("/things").body(Body::empty()).expect("req")).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.get("allow").is_some());
    assert_error_shape(&b, "Method Not Allowed");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let (_, h, _) = send(
        Request::get("/list")
            .header("x-request-id", "trace-42")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(h["x-request-id"], "trace-42");
    let (_, h, _) = send(Request::get("/list").body(Body::empty()).expect("req")).await;
    let generated = h["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(generated.len(), 32);
    let (_, h2, _) = send(Request::get("/list").body(Body::empty()).expect("req")).await;
    assert_ne!(
        h2["x-request-id"],
        generated.as_str(),
        "ids must differ per request"
    );
    // A hostile id (spaces, too long) is replaced, not echoed.
    let (_, h, _) = send(
        Request::get("/list")
            .header("x-request-id", "a b")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_ne!(h["x-request-id"], "a b");
    // Errors carry it too.
    let (_, h, _) = send(
        Request::get("/nowhere")
            .header("x-request-id", "e-1")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(h["x-request-id"], "e-1");
}

#[tokio::test]
async fn security_headers_on_success_and_error() {
    for uri in ["/list", "/nowhere", "/boom"] {
        let (_, h, _) = send(Request::get(uri).body(Body::empty()).expect("req")).await;
        assert_eq!(h["x-content-type-options"], "nosniff", "{uri}");
        assert_eq!(h["x-frame-options"], "DENY", "{uri}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{uri}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .is_ok_and(|v| v.contains("default-src 'none'")),
            "{uri}"
        );
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
    let (_, h, _) = send(
        Request::get("/list")
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert!(
        h["strict-transport-security"]
            .to_str()
            .is_ok_and(|v| v.contains("max-age="))
    );
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let preflight = |origin: &'static str| {
        Request::options("/things")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .expect("req")
    };
    let (s, h, _) = send(preflight("https://app.example")).await;
    assert!(s.is_success());
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let (_, h, _) = send(preflight("https://evil.example")).await;
    assert!(h.get("access-control-allow-origin").is_none());
}
