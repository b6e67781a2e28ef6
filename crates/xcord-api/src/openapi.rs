//! The OpenAPI 3 document, assembled from the route annotations.
//!
//! A handler's annotation says what is particular to it: its success bodies and the refusals
//! of its use-case (403, 404, 409, …). What follows from how a route is built is added here
//! from facts the router knows, so a new route cannot forget it:
//!
//! | fact | responses |
//! | --- | --- |
//! | behind `require_auth` | bearer security, 401, 429 (per-user limit) |
//! | behind a per-address limit | 429 |
//! | a request body (JSON or multipart) | 400, 408 (the body stalled), 413, 415, 422 |
//! | path parameters (a malformed or unknown id names nothing) | 404 |
//! | query parameters | 422 |
//! | an `If-Match` header | 400, 409 |
//! | any operation: target or head too long, request timeout, database down | 414, 431, 503 |
//!
//! Every error response then gets the body it really has: [`ErrorBody`] (whose `details`
//! is the list of failed rules), with `details` required on a 422, and `{retryAfter}` with
//! the `Retry-After` and `X-RateLimit-*` headers on a 429.

use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema};
use xcord_types::{ErrorBody, FieldError, RetryAfter};

/// Document-level facts; paths are added by the routers that register them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "xcord",
        description = "A self-hostable, Discord-style chat backend. REST lives under `/api/v1` \
            (also mounted at `/api/rest`); the WebSocket gateway is at `/api/ws`. Errors always \
            have the shape `{error, message, details?}`: `details` lists the failed rules of a \
            422 and carries `{retryAfter}` on a 429.",
        license(name = "AGPL-3.0-only")
    ),
    paths(crate::routes::cdn::get_file),
    components(schemas(ErrorBody, FieldError, RetryAfter)),
    modifiers(&SharedComponents),
    tags(
        (name = "auth", description = "Accounts, tokens, e-mail flows, two-factor authentication, sessions"),
        (name = "users", description = "Profiles, settings, presence, relationships, keys, DM channels"),
        (name = "servers", description = "Servers (guilds)"),
        (name = "channels", description = "Server channels and permission overwrites"),
        (name = "roles", description = "Roles and their permissions"),
        (name = "members", description = "Members, nicknames and role assignment"),
        (name = "moderation", description = "Kicks, bans and the audit log"),
        (name = "invites", description = "Invites and vanity codes"),
        (name = "messages", description = "Messages, reactions, pins, attachments, search and read states"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";
/// The schema of a 422 body: [`ErrorBody`] with `details` required.
pub const VALIDATION_ERROR: &str = "ValidationError";
/// The schema of a 429 body: `{error, message, details: {retryAfter}}`.
pub const RATE_LIMIT_ERROR: &str = "RateLimitError";

/// A status every route of some kind can answer, documented once under
/// `components.responses` and referenced from each operation.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
}

const BAD_REQUEST: Shared = Shared {
    status: "400",
    name: "BadRequest",
    description: "Malformed body (bad JSON, wrong overall shape, broken multipart) or header",
};
const UNAUTHORIZED: Shared = Shared {
    status: "401",
    name: "Unauthorized",
    description: "Missing, invalid, expired or revoked access token",
};
const REQUEST_TIMEOUT: Shared = Shared {
    status: "408",
    name: "RequestTimeout",
    description: "The announced body did not arrive within the request timeout",
};
const NOT_FOUND: Shared = Shared {
    status: "404",
    name: "NotFound",
    description: "No such resource, one the caller may not see, or a malformed id",
};
const CONFLICT: Shared = Shared {
    status: "409",
    name: "Conflict",
    description: "`If-Match` names a version that is no longer current",
};
const PAYLOAD_TOO_LARGE: Shared = Shared {
    status: "413",
    name: "PayloadTooLarge",
    description: "The body is larger than this route accepts",
};
const UNSUPPORTED_MEDIA_TYPE: Shared = Shared {
    status: "415",
    name: "UnsupportedMediaType",
    description: "The body's `Content-Type` is not one this route takes",
};
const URI_TOO_LONG: Shared = Shared {
    status: "414",
    name: "UriTooLong",
    description: "The request target is over 8 KiB",
};
const HEADERS_TOO_LARGE: Shared = Shared {
    status: "431",
    name: "HeadersTooLarge",
    description: "The request line and headers are over 32 KiB",
};
const VALIDATION_FAILED: Shared = Shared {
    status: "422",
    name: "ValidationFailed",
    description: "A field or parameter is missing, of the wrong type or breaks a rule; \
        `details` lists each",
};
const RATE_LIMITED: Shared = Shared {
    status: "429",
    name: "RateLimited",
    description: "Rate limited; retry after `Retry-After` seconds",
};
const UNAVAILABLE: Shared = Shared {
    status: "503",
    name: "ServiceUnavailable",
    description: "A dependency is down, or the request took longer than the configured timeout",
};

const SHARED: [Shared; 12] = [
    BAD_REQUEST,
    UNAUTHORIZED,
    NOT_FOUND,
    REQUEST_TIMEOUT,
    CONFLICT,
    PAYLOAD_TOO_LARGE,
    URI_TOO_LONG,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_FAILED,
    RATE_LIMITED,
    HEADERS_TOO_LARGE,
    UNAVAILABLE,
];

/// The schema name of the body an error status really carries.
fn error_schema_for(status: &str) -> &'static str {
    match status {
        "422" => VALIDATION_ERROR,
        "429" => RATE_LIMIT_ERROR,
        _ => "ErrorBody",
    }
}

/// A response with the error body of `status` (and the rate-limit headers on a 429).
fn error_response(status: &str, description: &str) -> Response {
    let schema = Ref::from_schema_name(error_schema_for(status));
    let mut res = ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(schema)));
    if status == "429" {
        let int = |text: &str| {
            HeaderBuilder::new()
                .schema(Some(u64::schema()))
                .description(Some(text))
                .build()
        };
        res = res
            .header("Retry-After", int("Seconds until a retry can succeed"))
            .header("X-RateLimit-Limit", int("The budget of the window"))
            .header("X-RateLimit-Remaining", int("What is left of it (0)"))
            .header("X-RateLimit-Reset", int("Seconds until the window resets"));
    }
    res.build()
}

/// Security scheme, shared responses and the 422 and 429 body schemas.
struct SharedComponents;

impl Modify for SharedComponents {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        let validation: Schema = AllOfBuilder::new()
            .item(Ref::from_schema_name("ErrorBody"))
            .item(ObjectBuilder::new().required("details"))
            .description(Some(
                "The error body of a 422: `details` lists every failed rule.",
            ))
            .into();
        let rate_limited: Schema = ObjectBuilder::new()
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("`Too Many Requests`")),
            )
            .property(
                "message",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A sentence a person can read.")),
            )
            .property("details", Ref::from_schema_name("RetryAfter"))
            .required("error")
            .required("message")
            .required("details")
            .description(Some(
                "The error body of a 429: `details.retryAfter` repeats `Retry-After`.",
            ))
            .into();
        components
            .schemas
            .insert(VALIDATION_ERROR.into(), validation.into());
        components
            .schemas
            .insert(RATE_LIMIT_ERROR.into(), rate_limited.into());
        for shared in SHARED {
            components.responses.insert(
                shared.name.into(),
                error_response(shared.status, shared.description).into(),
            );
        }
    }
}

/// Every operation of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn each_operation(doc: &mut Document, mut f: impl FnMut(&mut Operation)) {
    for item in doc.paths.paths.values_mut() {
        operations(item).for_each(&mut f);
    }
}

/// Adds the shared response unless the operation already documents that status.
fn add(op: &mut Operation, shared: &Shared) {
    op.responses
        .responses
        .entry(shared.status.into())
        .or_insert_with(|| Ref::from_response_name(shared.name).into());
}

/// Marks every operation of `doc` as behind `require_auth`: bearer security, 401, and the
/// per-user general limit's 429.
pub fn authenticated(doc: &mut Document) {
    each_operation(doc, |op| {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        add(op, &UNAUTHORIZED);
        add(op, &RATE_LIMITED);
    });
}

/// Marks every operation of `doc` as behind a per-address limit (register, login).
pub fn limited_per_address(doc: &mut Document) {
    each_operation(doc, |op| add(op, &RATE_LIMITED));
}

/// Adds what follows from an operation's shape (body, parameters, headers) and gives every
/// error response the body it really carries. Run once on the whole document.
pub fn complete_error_responses(doc: &mut Document) {
    each_operation(doc, |op| {
        let params: Vec<(ParameterIn, String)> = op
            .parameters
            .iter()
            .flatten()
            .filter_map(|p| match p {
                RefOr::T(p) => Some((p.parameter_in.clone(), p.name.to_ascii_lowercase())),
                RefOr::Ref(_) => None,
            })
            .collect();
        let has = |place: ParameterIn| params.iter().any(|(at, _)| *at == place);
        if op.request_body.is_some() {
            for shared in [
                &BAD_REQUEST,
                &REQUEST_TIMEOUT,
                &PAYLOAD_TOO_LARGE,
                &UNSUPPORTED_MEDIA_TYPE,
                &VALIDATION_FAILED,
            ] {
                add(op, shared);
            }
        }
        if has(ParameterIn::Path) {
            add(op, &NOT_FOUND);
        }
        if has(ParameterIn::Query) {
            add(op, &VALIDATION_FAILED);
        }
        if params
            .iter()
            .any(|(at, name)| *at == ParameterIn::Header && name == "if-match")
        {
            add(op, &BAD_REQUEST);
            add(op, &CONFLICT);
        }
        for shared in [&URI_TOO_LONG, &HEADERS_TOO_LARGE, &UNAVAILABLE] {
            add(op, shared);
        }
        for (status, response) in op.responses.responses.iter_mut() {
            if let RefOr::T(response) = response {
                normalize_error_body(status, response);
            }
        }
    });
}

/// An inline error response written in a handler's annotation keeps its description but
/// gets the canonical body (and headers) of its status, unless it names another body on
/// purpose (the health probes answer 503 with their own report).
fn normalize_error_body(status: &str, response: &mut Response) {
    if !(status.starts_with('4') || status.starts_with('5')) {
        return;
    }
    let names_error_body = |c: &RefOr<Content>| match c {
        RefOr::T(Content { schema: None, .. }) => true,
        RefOr::T(Content {
            schema: Some(RefOr::Ref(r)),
            ..
        }) => r.ref_location.ends_with("/ErrorBody"),
        _ => false,
    };
    if !response.content.values().all(names_error_body) {
        return;
    }
    let canonical = error_response(status, &response.description);
    response.content = canonical.content;
    for (name, header) in canonical.headers {
        response.headers.entry(name).or_insert(header);
    }
}
