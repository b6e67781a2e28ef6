use reqwest::Method;
use serde_json::{Value, json};
use xcord_testkit::{Backend, on_both_backends, spawn_app};

on_both_backends!(
    unknown_routes_are_json_404_everywhere,
    wrong_methods_are_json_405,
    openapi_is_served_under_both_rest_prefixes,
    docs_page_and_its_assets_are_served_locally,
    metrics_count_requests_by_route_and_status,
    responses_carry_request_ids_and_security_headers,
    every_route_is_in_the_openapi_document,
    the_documented_security_is_what_the_server_enforces,
    optional_bodies_are_empty_or_json,
);

async fn every_route_is_in_the_openapi_document(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = app.get("/api/v1/openapi.json").await.body;
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let expected = [
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/login/mfa"),
        ("post", "/api/v1/auth/guest"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/auth/me"),
        ("post", "/api/v1/auth/verify-email"),
        ("post", "/api/v1/auth/resend-verification"),
        ("post", "/api/v1/auth/forgot-password"),
        ("post", "/api/v1/auth/reset-password"),
        ("post", "/api/v1/auth/enable-2fa"),
        ("post", "/api/v1/auth/verify-2fa"),
        ("post", "/api/v1/auth/disable-2fa"),
        ("get", "/api/v1/auth/sessions"),
        ("delete", "/api/v1/auth/sessions/{id}"),
        ("get", "/api/v1/users/@me"),
        ("patch", "/api/v1/users/@me"),
        ("get", "/api/v1/users/{id}"),
        ("patch", "/api/v1/users/{id}"),
        ("get", "/api/v1/users/@me/settings"),
        ("patch", "/api/v1/users/@me/settings"),
        ("post", "/api/v1/users/@me/avatar"),
        ("post", "/api/v1/users/@me/banner"),
        ("get", "/api/v1/users/search"),
        ("put", "/api/v1/users/@me/status"),
        ("get", "/api/v1/users/online/count"),
        ("get", "/api/v1/users/online/list"),
        ("get", "/api/v1/users/{id}/presence"),
        ("get", "/api/v1/users/@me/relationships"),
        ("put", "/api/v1/users/@me/relationships/{userId}"),
        ("delete", "/api/v1/users/@me/relationships/{userId}"),
        ("put", "/api/v1/users/@me/keys"),
        ("get", "/api/v1/users/{id}/keys"),
        ("get", "/api/v1/users/{id}/dm-channels"),
        ("post", "/api/v1/users/{id}/dm-channels"),
        ("get", "/api/v1/servers"),
        ("post", "/api/v1/servers"),
        ("get", "/api/v1/servers/{id}"),
        ("patch", "/api/v1/servers/{id}"),
        ("delete", "/api/v1/servers/{id}"),
        ("get", "/api/v1/servers/{id}/stats"),
        ("get", "/api/v1/servers/{id}/channels"),
        ("post", "/api/v1/servers/{id}/channels"),
        ("get", "/api/v1/channels/{id}"),
        ("patch", "/api/v1/channels/{id}"),
        ("delete", "/api/v1/channels/{id}"),
        ("put", "/api/v1/channels/{id}/permissions/{targetId}"),
        ("delete", "/api/v1/channels/{id}/permissions/{targetId}"),
        ("get", "/api/v1/servers/{id}/roles"),
        ("post", "/api/v1/servers/{id}/roles"),
        ("patch", "/api/v1/servers/{id}/roles/{roleId}"),
        ("delete", "/api/v1/servers/{id}/roles/{roleId}"),
        ("get", "/api/v1/servers/{id}/members"),
        ("get", "/api/v1/servers/{id}/members/{userId}"),
        ("patch", "/api/v1/servers/{id}/members/{userId}"),
        ("delete", "/api/v1/servers/{id}/members/{userId}"),
        (
            "put",
            "/api/v1/servers/{id}/members/{userId}/roles/{roleId}",
        ),
        (
            "delete",
            "/api/v1/servers/{id}/members/{userId}/roles/{roleId}",
        ),
        ("post", "/api/v1/servers/{id}/members/{userId}/kick"),
        ("get", "/api/v1/servers/{id}/bans"),
        ("post", "/api/v1/servers/{id}/bans"),
        ("delete", "/api/v1/servers/{id}/bans/{userId}"),
        ("get", "/api/v1/servers/{id}/invites"),
        ("post", "/api/v1/servers/{id}/invites"),
        ("get", "/api/v1/invites/{code}"),
        ("post", "/api/v1/invites/{code}"),
        ("delete", "/api/v1/invites/{code}"),
        ("get", "/api/v1/servers/{id}/audit-log"),
        ("get", "/api/v1/channels/{id}/messages"),
        ("post", "/api/v1/channels/{id}/messages"),
        ("get", "/api/v1/channels/{id}/messages/{messageId}"),
        ("patch", "/api/v1/channels/{id}/messages/{messageId}"),
        ("delete", "/api/v1/channels/{id}/messages/{messageId}"),
        ("post", "/api/v1/channels/{id}/messages/bulk-delete"),
        (
            "put",
            "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}",
        ),
        (
            "post",
            "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}",
        ),
        (
            "delete",
            "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}",
        ),
        (
            "get",
            "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}",
        ),
        ("get", "/api/v1/channels/{id}/pins"),
        ("put", "/api/v1/channels/{id}/pins/{messageId}"),
        ("delete", "/api/v1/channels/{id}/pins/{messageId}"),
        ("post", "/api/v1/channels/{id}/typing"),
        ("post", "/api/v1/channels/{id}/attachments"),
        ("post", "/api/v1/channels/{id}/messages/{messageId}/ack"),
        ("get", "/api/v1/users/@me/read-states"),
        ("get", "/api/v1/channels/{id}/messages/search"),
        ("get", "/api/v1/servers/{id}/messages/search"),
        ("get", "/cdn/{key}"),
        ("get", "/health"),
        ("get", "/metrics"),
    ];
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // Authenticated operations declare the bearer scheme.
    assert!(paths["/api/v1/users/@me"]["get"]["security"].is_array());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

async fn unknown_routes_are_json_404_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/api/v1/nope",
        "/api/rest/nope",
        "/nope",
        "/api/v1/servers/abc/whatever",
        "/api/v2/users/@me",
    ] {
        app.get(path).await.assert_error(404, "Not Found");
    }
}

async fn wrong_methods_are_json_405(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.post("/health", &serde_json::json!({})).await;
    res.assert_error(405, "Method Not Allowed");
    assert_eq!(res.header("allow"), Some("GET,HEAD"));
}

async fn openapi_is_served_under_both_rest_prefixes(backend: Backend) {
    let app = spawn_app(backend).await;
    let v1 = app.get("/api/v1/openapi.json").await;
    assert_eq!(v1.status, 200);
    assert!(
        v1.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert!(
        v1.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        v1.body["openapi"]
    );
    let paths = v1.body["paths"].as_object().expect("paths");
    for p in ["/health", "/health/live", "/health/ready", "/metrics"] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(v1.body["components"]["schemas"]["ErrorBody"].is_object());
    let rest = app.get("/api/rest/openapi.json").await;
    assert_eq!(rest.status, 200);
    assert_eq!(rest.body, v1.body);
}

async fn docs_page_and_its_assets_are_served_locally(backend: Backend) {
    let app = spawn_app(backend).await;
    let redirect = app.get("/api/docs").await;
    assert!(
        matches!(redirect.status, 200 | 301 | 303 | 307 | 308),
        "{}",
        redirect.status
    );
    let page = app.get("/api/docs/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    // Offline use: nothing may come from another host.
    assert!(
        !page.text.contains("http://") && !page.text.contains("https://"),
        "{}",
        page.text
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let assets = asset_refs(&page.text);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")),
        "no scripts in {assets:?}"
    );
    assert!(
        assets.iter().any(|a| a.ends_with(".css")),
        "no styles in {assets:?}"
    );
    for asset in assets {
        let path = if asset.starts_with('/') {
            asset.clone()
        } else {
            format!("/api/docs/{}", asset.trim_start_matches("./"))
        };
        let res = app.get(&path).await;
        assert_eq!(res.status, 200, "{path}");
        assert!(res.text.len() > 100, "{path} is nearly empty");
    }
    // The initializer points the UI at our own document.
    let init = app.get("/api/docs/swagger-initializer.js").await;
    assert!(init.text.contains("/api/v1/openapi.json"), "{}", init.text);
}

/// `src="…"` and `href="…"` values of a page.
fn asset_refs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            if let Some(end) = part.find('"') {
                out.push(part[..end].to_owned());
            }
        }
    }
    out
}

async fn metrics_count_requests_by_route_and_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let count = |text: &str, line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let key = r#"http_requests_total{method="GET",route="/health/live",status="200"}"#;
    let before = count(&app.get("/metrics").await.text, key);
    for _ in 0..3 {
        app.get("/health/live").await;
    }
    app.get("/api/v1/no-such-route").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status, 200);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    // Other tests in this process share the recorder, so the count grows by at least 3.
    assert!(count(&res.text, key) >= before + 3.0, "{}", res.text);
    assert!(
        res.text.contains(r#"route="unmatched",status="404""#),
        "raw paths must not become labels"
    );
    assert!(
        res.text.contains("http_request_duration_seconds_bucket{"),
        "no latency histogram"
    );
    assert!(res.text.contains(r#"db_pool_connections{state="idle"}"#));
    assert!(!res.text.contains("no-such-route"));
}

async fn responses_carry_request_ids_and_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .expect("send");
    assert_eq!(res.headers()["x-request-id"], "client-chosen-1");
    let res = app.get("/api/v1/missing").await;
    assert_eq!(res.header("x-request-id").map(str::len), Some(32));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("x-frame-options"), Some("DENY"));
    assert!(res.header("content-security-policy").is_some());
    assert!(matches!(res.body, Value::Object(_)));
}

/// Every operation the document marks as authenticated answers 401 without a token, and
/// none of the others does: the document's `security` is the server's, not an annotation's.
async fn the_documented_security_is_what_the_server_enforces(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = app.get("/api/v1/openapi.json").await.body;
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    for (template, item) in &paths {
        // Placeholder ids: the token is checked before anything in the path.
        let path = template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().into_iter().flatten() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let secured = op["security"].is_array();
            let res = app.request(m, &path, None, None).await;
            if secured != (res.status == 401) {
                wrong.push(format!(
                    "{method} {template}: documented secured={secured}, answered {}",
                    res.status
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Routes whose JSON body is optional (kick, invite creation, friend requests) take no body
/// or a JSON one; anything else is 415, as on every other JSON route.
async fn optional_bodies_are_empty_or_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("optbody_owner").await;
    let srv = app
        .post_as(
            &owner.token,
            "/servers",
            &json!({"name": "optional bodies"}),
        )
        .await;
    let id = srv.str_at("/id");
    let url = app.url(&format!("/api/v1/servers/{id}/invites"));
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut req = app
            .client
            .post(url.clone())
            .bearer_auth(&owner.token)
            .body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(send("", None).await, Some(201));
    assert_eq!(send("  \n", Some("text/plain")).await, Some(201));
    assert_eq!(
        send("{\"maxUses\": 5}", Some("application/json")).await,
        Some(201)
    );
    assert_eq!(
        send("{\"maxUses\": 5}", Some("text/plain")).await,
        Some(415)
    );
    assert_eq!(send("{\"maxUses\": 5}", None).await, Some(415));
    assert_eq!(
        send("{\"maxUses\":", Some("application/json")).await,
        Some(400)
    );
    assert_eq!(
        send("{\"maxUses\": \"x\"}", Some("application/json")).await,
        Some(422)
    );
}
