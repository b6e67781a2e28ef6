use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::middleware::from_fn;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::openapi::ApiDoc;
use crate::{AppState, error, health, layers, metrics};

/// HTTP behaviour taken from configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Origins allowed by CORS; `*` allows any; empty sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest accepted request body for JSON routes, in bytes.
    pub body_limit: usize,
    /// Longest time a request may take to produce its response.
    pub request_timeout: Duration,
    /// Whether the REST API is mounted (the `api` role).
    pub serve_rest: bool,
}

/// The REST routes in groups that share layers; mounted at `/api/v1` and `/api/rest`.
struct RestGroups {
    /// Account creation, limited per address.
    register: OpenApiRouter<AppState>,
    /// Login, limited per address.
    login: OpenApiRouter<AppState>,
    /// Token-based public routes (refresh, e-mail flows).
    open: OpenApiRouter<AppState>,
    /// Everything that needs a bearer token.
    authed: OpenApiRouter<AppState>,
    /// Authenticated uploads, with a larger body limit.
    uploads: OpenApiRouter<AppState>,
    /// Message attachments, with the configured (larger) limit.
    attachments: OpenApiRouter<AppState>,
}

fn rest_groups() -> RestGroups {
    use crate::routes::{auth, messages, scheduled, servers, users, voice};
    RestGroups {
        register: OpenApiRouter::new()
            .routes(routes!(auth::register))
            .routes(routes!(auth::guest)),
        login: OpenApiRouter::new()
            .routes(routes!(auth::login))
            .routes(routes!(auth::login_mfa)),
        open: OpenApiRouter::new()
            .routes(routes!(servers::preview_invite))
            .routes(routes!(auth::refresh))
            .routes(routes!(auth::verify_email))
            .routes(routes!(auth::forgot_password))
            .routes(routes!(auth::reset_password)),
        authed: OpenApiRouter::new()
            .routes(routes!(auth::logout))
            .routes(routes!(auth::auth_me))
            .routes(routes!(auth::resend_verification))
            .routes(routes!(auth::enable_2fa))
            .routes(routes!(auth::verify_2fa))
            .routes(routes!(auth::disable_2fa))
            .routes(routes!(auth::sessions))
            .routes(routes!(auth::revoke_session))
            .routes(routes!(users::get_me, users::patch_me))
            .routes(routes!(users::get_user, users::patch_user))
            .routes(routes!(users::get_settings, users::patch_settings))
            .routes(routes!(users::search))
            .routes(routes!(users::put_status))
            .routes(routes!(users::online_count))
            .routes(routes!(users::online_list))
            .routes(routes!(users::presence))
            .routes(routes!(users::relationships))
            .routes(routes!(users::put_relationship, users::delete_relationship))
            .routes(routes!(users::put_keys, users::get_my_keys))
            .routes(routes!(users::get_keys))
            .routes(routes!(users::list_dms, users::create_dm))
            .routes(routes!(servers::list_servers, servers::create_server))
            .routes(routes!(
                servers::get_server,
                servers::patch_server,
                servers::delete_server
            ))
            .routes(routes!(servers::server_stats))
            .routes(routes!(servers::list_channels, servers::create_channel))
            .routes(routes!(
                servers::get_channel,
                servers::patch_channel,
                servers::delete_channel
            ))
            .routes(routes!(servers::put_overwrite, servers::delete_overwrite))
            .routes(routes!(servers::list_roles, servers::create_role))
            .routes(routes!(servers::patch_role, servers::delete_role))
            .routes(routes!(servers::list_members))
            .routes(routes!(
                servers::get_member,
                servers::patch_member,
                servers::delete_member
            ))
            .routes(routes!(
                servers::put_member_role,
                servers::delete_member_role
            ))
            .routes(routes!(servers::kick))
            .routes(routes!(servers::ban, servers::list_bans))
            .routes(routes!(servers::unban))
            .routes(routes!(servers::create_invite, servers::list_invites))
            .routes(routes!(servers::accept_invite, servers::delete_invite))
            .routes(routes!(servers::audit_log))
            .routes(routes!(messages::history, messages::post))
            .routes(routes!(
                messages::get_message,
                messages::edit,
                messages::delete
            ))
            .routes(routes!(messages::bulk_delete))
            .routes(routes!(
                messages::put_reaction,
                messages::post_reaction,
                messages::delete_reaction,
                messages::reaction_users
            ))
            .routes(routes!(messages::pins))
            .routes(routes!(messages::pin, messages::unpin))
            .routes(routes!(messages::typing))
            .routes(routes!(messages::ack))
            .routes(routes!(messages::read_states))
            .routes(routes!(messages::search_channel))
            .routes(routes!(messages::search_server))
            .routes(routes!(scheduled::create, scheduled::list))
            .routes(routes!(scheduled::get, scheduled::edit, scheduled::cancel))
            .routes(routes!(scheduled::mine))
            .routes(routes!(voice::join, voice::list))
            .routes(routes!(voice::answer))
            .routes(routes!(voice::update, voice::leave)),
        uploads: OpenApiRouter::new()
            .routes(routes!(users::post_avatar))
            .routes(routes!(users::post_banner)),
        attachments: OpenApiRouter::new().routes(routes!(messages::upload)),
    }
}

/// Largest multipart body for profile images: the 5 MB file plus multipart framing.
const UPLOAD_BODY_LIMIT: usize = 6 * 1024 * 1024;

/// The REST API with its layers.
fn rest_routes(state: &AppState) -> OpenApiRouter<AppState> {
    use axum::middleware::from_fn_with_state;
    use xcord_core::ratelimit::Tier;
    let g = rest_groups();
    let per_ip = |tier: Tier| {
        from_fn_with_state(
            state.clone(),
            move |axum::extract::State(s): axum::extract::State<AppState>, req, next| {
                crate::auth::limit_by_ip(s, tier, req, next)
            },
        )
    };
    let attachment_limit = state
        .core
        .settings
        .attachment_max_bytes
        .saturating_add(UPLOAD_BODY_LIMIT);
    let authed = g
        .authed
        .merge(g.uploads.layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)))
        .merge(g.attachments.layer(DefaultBodyLimit::max(attachment_limit)));
    g.register
        .route_layer(per_ip(Tier::Register))
        .merge(g.login.route_layer(per_ip(Tier::Login)))
        .merge(g.open)
        .merge(authed.route_layer(from_fn_with_state(state.clone(), crate::auth::require_auth)))
}

/// Health and metrics, at the root.
fn operations_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics_handler))
}

/// Files under `/cdn/`. The key spans several segments, so the route is a wildcard; the
/// OpenAPI entry comes from the handler's annotation (see `ApiDoc`).
fn cdn_routes() -> Router<AppState> {
    Router::new().route("/cdn/{*key}", get(crate::routes::cdn::get_file))
}

/// The pages the account e-mails link to (HTML, so not in the OpenAPI document).
fn page_routes() -> Router<AppState> {
    use crate::routes::pages;
    Router::new()
        .route(
            "/verify-email",
            get(pages::verify_email_page).post(pages::verify_email_submit),
        )
        .route(
            "/reset-password",
            get(pages::reset_password_page).post(pages::reset_password_submit),
        )
}

/// The OpenAPI document of every route this build serves. Each group's layers decide what
/// its operations can answer besides their own results (see [`crate::openapi`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use crate::openapi::{authenticated, complete_error_responses, limited_per_address};
    let g = rest_groups();
    let doc_of = |group: OpenApiRouter<AppState>| group.split_for_parts().1;
    let mut per_address = doc_of(g.register.merge(g.login));
    limited_per_address(&mut per_address);
    let mut authed = doc_of(g.authed.merge(g.uploads).merge(g.attachments));
    authenticated(&mut authed);
    let mut rest = doc_of(g.open);
    rest.merge(per_address);
    rest.merge(authed);
    let (_, ops) = operations_routes().split_for_parts();
    let mut doc = ApiDoc::openapi().nest("/api/v1", rest);
    doc.merge(ops);
    complete_error_responses(&mut doc);
    doc
}

/// Builds the whole HTTP application.
pub fn build_router(state: AppState, settings: &HttpSettings) -> anyhow::Result<Router> {
    let (rest, _) = rest_routes(&state).split_for_parts();
    let (ops, _) = operations_routes().split_for_parts();
    let cdn = cdn_routes();
    let doc = openapi();
    let doc_json = serde_json::to_string(&doc)?;

    let mut app = Router::new();
    if settings.serve_rest {
        app = app
            .nest("/api/v1", rest.clone())
            .nest("/api/rest", rest)
            .nest("/compat/rtms", crate::compat::rtms::router())
            .nest("/compat/hype", crate::compat::hype::router())
            .merge(cdn)
            .merge(page_routes());
    }
    let app = app
        .merge(ops)
        .route(
            "/api/rest/openapi.json",
            get(move || {
                let body = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .fallback(error::not_found)
        .with_state(state)
        .merge(SwaggerUi::new("/api/docs").url("/api/v1/openapi.json", doc));

    apply_layers(app, settings)
}

/// Wraps `app` in the stack every response passes through, outermost first: request id,
/// metrics, trace span, security headers, head limits (414/431), JSON error bodies, CORS,
/// panic catching, the body-stall check (408), the request timeout and the body limit.
pub fn apply_layers(app: Router, settings: &HttpSettings) -> anyhow::Result<Router> {
    let mut app = app
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(from_fn(layers::body_stalls_are_408))
        .layer(CatchPanicLayer::custom(layers::panic_response));
    if let Some(cors) = cors_layer(&settings.cors_origins)? {
        app = app.layer(cors);
    }
    Ok(app
        .layer(from_fn(layers::json_errors))
        .layer(from_fn(layers::head_limits))
        .layer(from_fn(layers::security_headers))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get(&layers::REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(from_fn(layers::record_metrics))
        .layer(from_fn(layers::request_id)))
}

fn cors_layer(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("invalid CORS origin {o:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(list)
    };
    let exposed = [
        "x-request-id",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ]
    .map(HeaderName::from_static);
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            // The request's own list, echoed: browsers do not let `*` cover
            // `Authorization`, which every client sends (SPEC §7).
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(exposed)
            .max_age(Duration::from_secs(600)),
    ))
}
