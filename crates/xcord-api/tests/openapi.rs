//! Structural truths of the OpenAPI document, checked on the built document in every test
//! run. The document is what outside tools fuzz against (`scripts/conformance`); these rules
//! are what such a run would otherwise find first: a status a route can answer that the
//! document does not list, or an error body of another shape than the one sent.

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(xcord_api::openapi_document()).expect("the document serializes")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `(method, path, operation)` for every operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

fn statuses(op: &Value) -> Vec<String> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

fn params_in<'a>(op: &'a Value, place: &str) -> Vec<&'a Value> {
    op["parameters"]
        .as_array()
        .map(|ps| ps.iter().filter(|p| p["in"] == place).collect())
        .unwrap_or_default()
}

/// The response object of a status, with a `$ref` to `components.responses` followed.
fn response<'a>(doc: &'a Value, op: &'a Value, status: &str) -> &'a Value {
    let r = &op["responses"][status];
    match r["$ref"].as_str() {
        Some(name) => {
            let name = name.rsplit('/').next().unwrap_or_default();
            &doc["components"]["responses"][name]
        }
        None => r,
    }
}

/// Every failure found, so one run names them all.
fn assert_none(what: &str, failures: Vec<String>) {
    assert!(failures.is_empty(), "{what}:\n  {}", failures.join("\n  "));
}

fn missing(doc: &Value, need: &[&str], pick: impl Fn(&str, &Value) -> bool) -> Vec<String> {
    let mut failures = Vec::new();
    for (method, path, op) in operations(doc) {
        if !pick(&path, &op) {
            continue;
        }
        let have = statuses(&op);
        for status in need {
            if !have.iter().any(|s| s == status) {
                failures.push(format!("{} {path}: no {status}", method.to_uppercase()));
            }
        }
    }
    failures
}

#[test]
fn error_details_are_a_list_of_field_rules() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let details = &schemas["ErrorBody"]["properties"]["details"];
    assert_eq!(details["type"], "array", "{details}");
    assert_eq!(
        details["items"]["$ref"], "#/components/schemas/FieldError",
        "{details}"
    );
    let required = schemas["ErrorBody"]["required"].clone();
    assert_eq!(required, serde_json::json!(["error", "message"]));
    let field = &schemas["FieldError"];
    assert_eq!(
        field["required"],
        serde_json::json!(["field", "rule", "message"])
    );
    // A 422 always lists its failures; a 429 says when to retry.
    let validation = schemas["ValidationError"].to_string();
    assert!(
        validation.contains("#/components/schemas/ErrorBody"),
        "{validation}"
    );
    assert!(validation.contains("\"details\""), "{validation}");
    let limited = &schemas["RateLimitError"];
    assert_eq!(
        limited["properties"]["details"]["$ref"],
        "#/components/schemas/RetryAfter"
    );
    assert_eq!(
        schemas["RetryAfter"]["required"],
        serde_json::json!(["retryAfter"])
    );
}

#[test]
fn every_body_route_documents_its_body_failures() {
    let doc = document();
    assert_none(
        "operations with a request body must document 400, 408, 413, 415 and 422",
        missing(&doc, &["400", "408", "413", "415", "422"], |_, op| {
            op.get("requestBody").is_some()
        }),
    );
}

#[test]
fn every_authenticated_route_documents_401_and_429() {
    let doc = document();
    let authed = |_: &str, op: &Value| op.get("security").is_some_and(|s| s != &Value::Null);
    assert_none(
        "operations with security must document 401 and 429",
        missing(&doc, &["401", "429"], authed),
    );
    // The bearer scheme the operations name exists.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Only the public account routes, invite previews, files and operations are open.
    let open: Vec<String> = operations(&doc)
        .into_iter()
        .filter(|(_, _, op)| !authed("", op))
        .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    let expected_open = [
        "POST /api/v1/auth/register",
        "POST /api/v1/auth/login",
        "POST /api/v1/auth/login/mfa",
        "POST /api/v1/auth/guest",
        "POST /api/v1/auth/refresh",
        "POST /api/v1/auth/verify-email",
        "POST /api/v1/auth/forgot-password",
        "POST /api/v1/auth/reset-password",
        "GET /api/v1/invites/{code}",
        "GET /cdn/{key}",
        "GET /health",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
    ];
    let mut open_sorted = open.clone();
    open_sorted.sort();
    let mut expected: Vec<String> = expected_open.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(open_sorted, expected);
}

#[test]
fn rate_limited_public_routes_document_429() {
    let doc = document();
    let limited = [
        "/api/v1/auth/register",
        "/api/v1/auth/guest",
        "/api/v1/auth/login",
        "/api/v1/auth/login/mfa",
        "/api/v1/auth/forgot-password",
    ];
    assert_none(
        "per-address and per-e-mail limited routes must document 429",
        missing(&doc, &["429"], |path, _| limited.contains(&path)),
    );
}

#[test]
fn path_and_query_parameters_document_404_and_422() {
    let doc = document();
    assert_none(
        "operations with path parameters must document 404",
        missing(&doc, &["404"], |_, op| !params_in(op, "path").is_empty()),
    );
    assert_none(
        "operations with query parameters must document 422",
        missing(&doc, &["422"], |_, op| !params_in(op, "query").is_empty()),
    );
    assert_none(
        "operations taking If-Match must document 400 and 409",
        missing(&doc, &["400", "409"], |_, op| {
            params_in(op, "header").iter().any(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("if-match"))
            })
        }),
    );
}

#[test]
fn every_route_documents_its_transport_failures() {
    // Any request can have too long a target or head, time out, or meet a dead database.
    let doc = document();
    assert_none(
        "every operation can answer 414, 431 and 503",
        missing(&doc, &["414", "431", "503"], |_, _| true),
    );
}

#[test]
fn error_responses_carry_the_error_body_of_their_status() {
    let doc = document();
    let mut failures = Vec::new();
    for (method, path, op) in operations(&doc) {
        for status in statuses(&op) {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let res = response(&doc, &op, &status);
            let schema = res["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_default();
            let expected = match status.as_str() {
                "422" => "#/components/schemas/ValidationError",
                "429" => "#/components/schemas/RateLimitError",
                _ if path.starts_with("/health") => continue,
                _ => "#/components/schemas/ErrorBody",
            };
            if schema != expected {
                failures.push(format!(
                    "{} {path} {status}: body {schema:?}, expected {expected}",
                    method.to_uppercase()
                ));
            }
            if status == "429" && res["headers"].get("Retry-After").is_none() {
                failures.push(format!(
                    "{} {path} 429: no Retry-After header",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert_none("error responses with another body", failures);
}

#[test]
fn success_bodies_name_their_schema() {
    // A 2xx that sends JSON says which; `204`, files and metrics send none.
    let doc = document();
    let mut failures = Vec::new();
    for (method, path, op) in operations(&doc) {
        for status in statuses(&op) {
            if !status.starts_with('2') || status == "204" {
                continue;
            }
            if path.starts_with("/cdn/") || path == "/metrics" {
                continue;
            }
            // RFC 9725: leaving a WHIP session answers 200 with no body.
            if method == "delete" && path.ends_with("/voice/{sessionId}") && status == "200" {
                continue;
            }
            let res = response(&doc, &op, &status);
            if res["content"]["application/json"]["schema"].is_null() {
                failures.push(format!("{} {path} {status}", method.to_uppercase()));
            }
        }
    }
    assert_none("success responses without a JSON schema", failures);
}

#[test]
#[ignore = "prints the document; run with --ignored --nocapture"]
fn print_document() {
    println!(
        "{}",
        serde_json::to_string_pretty(&document()).expect("json")
    );
}

#[test]
fn channel_kinds_are_enums_of_their_wire_names() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let values = |schema: &Value| -> Vec<String> {
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("not an enum: {schema}"))
            .iter()
            .map(|v| v.as_str().map(str::to_owned).expect("a string value"))
            .collect()
    };
    let referenced = |property: &Value| -> String {
        property
            .to_string()
            .split("#/components/schemas/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no schema reference in {property}"))
    };
    // What a client may ask for, so generated clients and fuzzers send only these.
    let asked = referenced(&schemas["CreateChannelRequest"]["properties"]["type"]);
    assert_eq!(values(&schemas[&asked]), ["text", "voice", "category"]);
    // What a channel can be, as every channel in a response says.
    let answered = referenced(&schemas["Channel"]["properties"]["type"]);
    assert_eq!(
        values(&schemas[&answered]),
        ["text", "voice", "category", "dm", "group_dm"]
    );
}
