//! `/compat/rtms/*`: the REST API of seed 003's messaging system (SPEC §7) over the
//! canonical core. Conversations are DM channels, messages are channel messages, read marks
//! are read states; only the encoding differs: `{success, message, data}` envelopes,
//! `data.tokens`, `pagination {page, limit, total, pages}`, and the seed's error shapes.
//! docs/compat.md maps every route to its canonical one.

use axum::Json as JsonResponse;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use xcord_core::ratelimit::Tier;
use xcord_core::{Caller, Error};
use xcord_types::compat::rtms;
use xcord_types::rest::auth::{LoginRequest, LoginResponse, RegisterRequest};
use xcord_types::rest::channels::{Channel, CreateDmRequest};
use xcord_types::rest::messages::{CreateMessageRequest, Message};
use xcord_types::rest::users::{SelfUser, UpdateSelfRequest, UserSummary};
use xcord_types::{FieldError, Snowflake};

use super::{Authed, Body, Profile, ProfileError, field_errors, limit_address, route_not_found};
use crate::AppState;
use crate::auth::Client;
use crate::error::ApiError;
use crate::extract::Path;

/// The routes, to be nested at `/compat/rtms`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/me", get(me))
        .route("/api/auth/profile", put(update_profile))
        .route("/api/auth/logout", post(logout))
        .route("/api/users/list", get(list_users))
        .route("/api/users/online/count", get(online_count))
        .route("/api/users/online/status/{user_id}", get(online_status))
        .route("/api/users/online/list", get(online_list))
        .route(
            "/api/conversations",
            get(conversations).post(open_conversation),
        )
        .route("/api/messages/conversations/{id}", get(history))
        .route("/api/messages", post(send))
        .route("/api/messages/{id}/read", patch(mark_read))
        .fallback(async || route_not_found::<Rtms>())
}

/// Seed 003's shapes: `{success: false, message, errors: [{field, message}]}` with 400 for
/// invalid input, `{success: false, message, error: CODE, details?}` for the rest.
pub struct Rtms;

impl Profile for Rtms {
    fn error_body(
        status: StatusCode,
        message: String,
        details: Option<Value>,
    ) -> (StatusCode, Value) {
        error_body(status, message, details)
    }
}

type RtmsError = ProfileError<Rtms>;
type RtmsResult<T = Response> = Result<T, RtmsError>;
type RtmsAuth = Authed<Rtms>;

/// The seed's error code for a status.
fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "VALIDATION_ERROR",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        429 => "RATE_LIMIT_EXCEEDED",
        503 => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_ERROR",
    }
}

/// The body for a rendered failure, and its status.
fn error_body(status: StatusCode, message: String, details: Option<Value>) -> (StatusCode, Value) {
    match field_errors(status, details.as_ref()) {
        Some(fields) => (
            StatusCode::BAD_REQUEST,
            json!({
                "success": false,
                "message": "Validation failed",
                "errors": fields
                    .iter()
                    .map(|f| json!({"field": f.field, "message": f.message}))
                    .collect::<Vec<_>>(),
            }),
        ),
        None => {
            let mut body = json!({
                "success": false,
                "message": message,
                "error": error_code(status),
            });
            if let Some(d) = details {
                body["details"] = d;
            }
            (status, body)
        }
    }
}

/// `{success: true, message, data}` with `status`.
fn success(status: StatusCode, message: &str, data: Value) -> Response {
    (
        status,
        JsonResponse(json!({"success": true, "message": message, "data": data})),
    )
        .into_response()
}

/// An id in the path; one that cannot name anything is a 404, as canonically.
fn path_id(parts: Result<Path<Snowflake>, ApiError>) -> RtmsResult<Snowflake> {
    Ok(parts?.0)
}

fn user_json(u: &SelfUser) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "displayName": u.display_name,
        "avatar": u.avatar,
        "isActive": true,
        "createdAt": u.created_at,
    })
}

fn summary_json(u: &UserSummary) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "avatar": u.avatar,
        "isActive": true,
    })
}

fn tokens_json(access: &str, refresh: &str) -> Value {
    json!({"accessToken": access, "refreshToken": refresh})
}

fn conversation_json(c: &Channel, last: Option<&Message>) -> Value {
    json!({
        "id": c.id,
        "participants": c.recipients.iter().flatten().map(summary_json).collect::<Vec<_>>(),
        "lastMessage": last.map(|m| rtms::message(m, &[])),
        "lastMessageAt": last.map(|m| m.timestamp),
        "createdAt": c.created_at,
        "updatedAt": last.map(|m| m.timestamp).unwrap_or(c.created_at),
    })
}

/// `?page=&limit=`: page from 1, limit 1–100 (50 by default).
#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<String>,
    limit: Option<String>,
}

impl PageQuery {
    fn parse(&self) -> RtmsResult<(u64, u32)> {
        let mut bad = Vec::new();
        let page = match self.page.as_deref() {
            None => 1,
            Some(p) => p
                .parse::<u64>()
                .ok()
                .filter(|p| *p >= 1)
                .unwrap_or_else(|| {
                    bad.push(FieldError::new(
                        "page",
                        "range",
                        "must be a whole number from 1",
                    ));
                    1
                }),
        };
        let limit = match self.limit.as_deref() {
            None => 50,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .unwrap_or_else(|| {
                    bad.push(FieldError::new("limit", "range", "must be 1–100"));
                    50
                }),
        };
        if !bad.is_empty() {
            return Err(Error::Validation(bad).into());
        }
        Ok((page, limit))
    }
}

fn pagination(page: u64, limit: u32, total: i64) -> Value {
    let total = total.max(0) as u64;
    json!({
        "page": page,
        "limit": limit,
        "total": total,
        "pages": total.div_ceil(u64::from(limit)),
    })
}

async fn health(State(s): State<AppState>) -> Response {
    JsonResponse(json!({"status": "OK", "timestamp": s.core.clock.now()})).into_response()
}

#[derive(Deserialize)]
struct RegisterBody {
    username: String,
    email: String,
    password: String,
}

async fn register(
    State(s): State<AppState>,
    Client(c): Client,
    Body(b, _): Body<Rtms, RegisterBody>,
) -> RtmsResult {
    limit_address(&s, Tier::Register, &c).await?;
    let out = s
        .core
        .register(
            RegisterRequest {
                email: b.email,
                username: b.username,
                password: b.password,
                date_of_birth: None,
            },
            &c,
        )
        .await?;
    let user = json!({
        "id": out.user_id,
        "username": out.username,
        "email": out.email,
        "isActive": true,
    });
    let tokens = match (&out.access_token, &out.refresh_token) {
        (Some(a), Some(r)) => tokens_json(a, r),
        _ => Value::Null,
    };
    Ok(success(
        StatusCode::CREATED,
        "User registered successfully",
        json!({"user": user, "tokens": tokens}),
    ))
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(
    State(s): State<AppState>,
    Client(c): Client,
    Body(b, _): Body<Rtms, LoginBody>,
) -> RtmsResult {
    limit_address(&s, Tier::Login, &c).await?;
    let out = s
        .core
        .login(
            LoginRequest {
                email: Some(b.email),
                username: None,
                password: b.password,
                captcha: None,
            },
            &c,
        )
        .await?;
    match out {
        LoginResponse::Success(done) => Ok(success(
            StatusCode::OK,
            "Login successful",
            json!({
                "user": user_json(&done.user),
                "tokens": tokens_json(&done.access_token, &done.refresh_token),
            }),
        )),
        // This profile has no second step: the account signs in through the canonical API.
        LoginResponse::Mfa(_) => {
            let (status, mut body) = error_body(
                StatusCode::UNAUTHORIZED,
                "This account uses two-factor authentication; sign in through /api/v1/auth/login"
                    .into(),
                None,
            );
            body["error"] = json!("MFA_REQUIRED");
            Ok((status, JsonResponse(body)).into_response())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(s): State<AppState>, Body(b, _): Body<Rtms, RefreshBody>) -> RtmsResult {
    let pair = s.core.refresh(&b.refresh_token).await?;
    Ok(success(
        StatusCode::OK,
        "Token refreshed successfully",
        json!({"tokens": tokens_json(&pair.access_token, &pair.refresh_token)}),
    ))
}

async fn me(State(s): State<AppState>, auth: RtmsAuth) -> RtmsResult {
    let user = s.core.me(auth.caller()).await?;
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "Profile retrieved",
            json!({"user": user_json(&user)}),
        ),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileBody {
    username: Option<String>,
    email: Option<String>,
    current_password: Option<String>,
    new_password: Option<String>,
}

async fn update_profile(
    State(s): State<AppState>,
    auth: RtmsAuth,
    Body(b, _): Body<Rtms, ProfileBody>,
) -> RtmsResult {
    let user = s
        .core
        .update_me(
            auth.caller(),
            UpdateSelfRequest {
                username: b.username,
                email: b.email,
                current_password: b.current_password,
                new_password: b.new_password,
                ..Default::default()
            },
        )
        .await?;
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "Profile updated successfully",
            json!({"user": user_json(&user)}),
        ),
    )
        .into_response())
}

async fn logout(State(s): State<AppState>, auth: RtmsAuth) -> RtmsResult {
    s.core.logout(&auth.ctx).await?;
    Ok(success(
        StatusCode::OK,
        "Logged out successfully",
        Value::Null,
    ))
}

async fn list_users(
    State(s): State<AppState>,
    auth: RtmsAuth,
    Query(q): Query<PageQuery>,
) -> RtmsResult {
    let (page, limit) = q.parse()?;
    let offset = (page - 1).saturating_mul(u64::from(limit));
    let (users, total) = s.core.user_directory(offset, limit, false).await?;
    let users: Vec<Value> = users
        .iter()
        .map(|e| {
            json!({
                "id": e.user.id,
                "username": e.user.username,
                "displayName": e.user.display_name,
                "avatar": e.user.avatar,
                "isActive": true,
            })
        })
        .collect();
    let mut body = json!({
        "success": true,
        "message": "Users retrieved",
        "data": {"users": users},
    });
    body["pagination"] = pagination(page, limit, total);
    Ok((auth.rate, JsonResponse(body)).into_response())
}

async fn online_count(State(s): State<AppState>, auth: RtmsAuth) -> RtmsResult {
    let count = s.core.online_count().await?;
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "Online user count retrieved",
            json!({"onlineUserCount": count.online_user_count, "timestamp": count.timestamp}),
        ),
    )
        .into_response())
}

async fn online_status(
    State(s): State<AppState>,
    auth: RtmsAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> RtmsResult {
    let id = path_id(id)?;
    let p = s.core.presence_of(auth.caller(), id).await?;
    let status = serde_json::to_value(p.status).unwrap_or(Value::Null);
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "User online status retrieved",
            json!({
                "userId": p.user_id,
                "isOnline": status != json!("offline"),
                "status": status,
                "timestamp": s.core.clock.now(),
            }),
        ),
    )
        .into_response())
}

async fn online_list(State(s): State<AppState>, auth: RtmsAuth) -> RtmsResult {
    let list = s.core.online_list(auth.caller()).await?;
    let users: Vec<Value> = list
        .users
        .iter()
        .map(|o| {
            json!({
                "userId": o.user.id,
                "username": o.user.username,
                "avatar": o.user.avatar,
                "status": o.status,
            })
        })
        .collect();
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "Online users retrieved",
            json!({"count": users.len(), "onlineUsers": users, "timestamp": s.core.clock.now()}),
        ),
    )
        .into_response())
}

/// The conversation's last message, if it has one the caller may read.
async fn last_message(s: &AppState, caller: &Caller, c: &Channel) -> Option<Message> {
    let id = c.last_message_id?;
    s.core.get_message(caller, c.id, id).await.ok()
}

async fn conversations(State(s): State<AppState>, auth: RtmsAuth) -> RtmsResult {
    let caller = auth.caller();
    let list = s.core.dm_channels(caller, caller.user_id).await?;
    let mut out = Vec::with_capacity(list.channels.len());
    for c in &list.channels {
        let last = last_message(&s, caller, c).await;
        out.push((
            last.as_ref().map(|m| m.timestamp),
            conversation_json(c, last.as_ref()),
        ));
    }
    // Most recent activity first.
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    let conversations: Vec<Value> = out.into_iter().map(|(_, v)| v).collect();
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "Conversations retrieved",
            json!({"conversations": conversations}),
        ),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenConversationBody {
    participant_id: Snowflake,
}

async fn open_conversation(
    State(s): State<AppState>,
    auth: RtmsAuth,
    Body(b, _): Body<Rtms, OpenConversationBody>,
) -> RtmsResult {
    let caller = auth.caller();
    let (channel, created) = s
        .core
        .create_dm(
            caller,
            caller.user_id,
            CreateDmRequest {
                recipient_id: Some(b.participant_id),
                ..Default::default()
            },
        )
        .await?;
    let last = last_message(&s, caller, &channel).await;
    let (status, message) = if created {
        (StatusCode::CREATED, "Conversation created")
    } else {
        (StatusCode::OK, "Conversation retrieved")
    };
    Ok((
        auth.rate,
        success(
            status,
            message,
            json!({"conversation": conversation_json(&channel, last.as_ref())}),
        ),
    )
        .into_response())
}

async fn history(
    State(s): State<AppState>,
    auth: RtmsAuth,
    id: Result<Path<Snowflake>, ApiError>,
    Query(q): Query<PageQuery>,
) -> RtmsResult {
    let id = path_id(id)?;
    let (page, limit) = q.parse()?;
    let offset = (page - 1).saturating_mul(u64::from(limit));
    let got = s
        .core
        .history_page(auth.caller(), id, offset, limit)
        .await?;
    let mut body = json!({
        "success": true,
        "message": "Messages retrieved",
        "data": {
            "messages": got
                .messages
                .iter()
                .map(|m| rtms::message(m, &got.read_marks))
                .collect::<Vec<_>>(),
        },
    });
    body["pagination"] = pagination(page, limit, got.total);
    Ok((auth.rate, JsonResponse(body)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    conversation_id: Snowflake,
    content: String,
}

async fn send(
    State(s): State<AppState>,
    auth: RtmsAuth,
    Body(b, _): Body<Rtms, SendBody>,
) -> RtmsResult {
    let (message, _) = s
        .core
        .post_message(
            auth.caller(),
            b.conversation_id,
            CreateMessageRequest {
                content: Some(b.content),
                ..Default::default()
            },
        )
        .await?;
    Ok((
        auth.rate,
        success(
            StatusCode::CREATED,
            "Message sent successfully",
            json!({"message": rtms::message(&message, &[])}),
        ),
    )
        .into_response())
}

async fn mark_read(
    State(s): State<AppState>,
    auth: RtmsAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> RtmsResult {
    let id = path_id(id)?;
    let channel = s.core.ack_message(auth.caller(), id).await?;
    Ok((
        auth.rate,
        success(
            StatusCode::OK,
            "Message marked as read",
            json!({"messageId": id, "conversationId": channel, "readAt": s.core.clock.now()}),
        ),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_fields_become_the_seed_validation_shape() {
        let fields = vec![FieldError::new(
            "email",
            "format",
            "must be an e-mail address",
        )];
        let (status, body) = error_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid email".into(),
            serde_json::to_value(&fields).ok(),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"success": false, "message": "Validation failed",
                   "errors": [{"field": "email", "message": "must be an e-mail address"}]})
        );
    }

    #[test]
    fn other_failures_keep_their_status_and_name_a_code() {
        let (status, body) = error_body(StatusCode::CONFLICT, "Username taken.".into(), None);
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            body,
            json!({"success": false, "message": "Username taken.", "error": "CONFLICT"})
        );
        let (_, body) = error_body(
            StatusCode::TOO_MANY_REQUESTS,
            "Slow down.".into(),
            Some(json!({"retryAfter": 3})),
        );
        assert_eq!(body["error"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(body["details"]["retryAfter"], 3);
    }

    #[test]
    fn pages_are_counted_from_one_and_limits_are_bounded() {
        let q = |page: Option<&str>, limit: Option<&str>| PageQuery {
            page: page.map(Into::into),
            limit: limit.map(Into::into),
        };
        assert_eq!(q(None, None).parse().ok(), Some((1, 50)));
        assert_eq!(q(Some("3"), Some("20")).parse().ok(), Some((3, 20)));
        for (p, l) in [
            (Some("0"), None),
            (None, Some("101")),
            (Some("x"), None),
            (None, Some("-1")),
        ] {
            assert!(q(p, l).parse().is_err(), "{p:?} {l:?}");
        }
        assert_eq!(
            pagination(2, 50, 101),
            json!({"page": 2, "limit": 50, "total": 101, "pages": 3})
        );
        assert_eq!(pagination(1, 50, 0)["pages"], 0);
    }
}
