//! `/compat/hype/*`: the REST API of seed 002 (Hype, SPEC §7) over the canonical core.
//! `/compat/hype/auth/*` and `/compat/hype/api/*` with `{success, data}` envelopes, `meta`
//! for offset paging, `{success: false, error}` failures, and the seed's field names
//! (`avatarUrl`, `displayName`, upper-case statuses where the seed shows them, `_count`,
//! `owner`). docs/compat.md maps every route to its canonical one.

use std::collections::HashMap;

use axum::Json as JsonResponse;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use xcord_core::ratelimit::Tier;
use xcord_core::users::DirectoryEntry;
use xcord_core::{Caller, Error};
use xcord_types::Snowflake;
use xcord_types::compat::hype::upper_status;
use xcord_types::rest::auth::{LoginRequest, LoginResponse, LoginSuccess, RegisterRequest};
use xcord_types::rest::channels::{
    Channel, ChannelKind, CreateChannelRequest, NewChannelKind, UpdateChannelRequest,
};
use xcord_types::rest::messages::{CreateMessageRequest, EditMessageRequest, Message};
use xcord_types::rest::servers::Server;
use xcord_types::rest::users::{SelfUser, Status, StatusRequest, UpdateSelfRequest};

use super::{
    Authed, Body, MaybeAuthed, Profile, ProfileError, field_errors, limit_address, route_not_found,
};
use crate::AppState;
use crate::auth::Client;
use crate::error::ApiError;
use crate::extract::Path;

/// Seed 002's shapes: `{success: false, error: MESSAGE}`, and for invalid input 400
/// `{success: false, error: "Validation failed", details: [{code, path, message}]}`.
pub struct Hype;

impl Profile for Hype {
    fn error_body(
        status: StatusCode,
        message: String,
        details: Option<Value>,
    ) -> (StatusCode, Value) {
        match field_errors(status, details.as_ref()) {
            Some(fields) => (
                StatusCode::BAD_REQUEST,
                json!({
                    "success": false,
                    "error": "Validation failed",
                    "details": fields
                        .iter()
                        .map(|f| json!({"code": f.rule, "path": [f.field], "message": f.message}))
                        .collect::<Vec<_>>(),
                }),
            ),
            None => (status, json!({"success": false, "error": message})),
        }
    }
}

type HypeError = ProfileError<Hype>;
type HypeResult<T = Response> = Result<T, HypeError>;
type HypeAuth = Authed<Hype>;

/// The routes, to be nested at `/compat/hype`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api", get(api_info))
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/guest", post(guest))
        .route("/auth/refresh", post(refresh))
        .route("/auth/me", get(me))
        .route("/auth/logout", post(logout))
        .route("/api/users", get(list_users))
        .route("/api/users/{id}", get(get_user).put(update_user))
        .route("/api/users/{id}/status", put(set_status))
        .route("/api/servers", get(list_servers))
        .route("/api/servers/{id}", get(get_server))
        .route("/api/servers/{id}/channels", get(server_channels))
        .route("/api/channels", get(list_channels).post(create_channel))
        .route(
            "/api/channels/{id}",
            get(get_channel).put(update_channel).delete(delete_channel),
        )
        .route("/api/messages", get(history).post(send))
        .route(
            "/api/messages/{id}",
            get(get_message).put(edit_message).delete(delete_message),
        )
        .merge(super::hype_voice::routes())
        .fallback(async || route_not_found::<Hype>())
}

/// `{success: true, data}` with `status`.
fn data(status: StatusCode, data: Value) -> Response {
    (status, JsonResponse(json!({"success": true, "data": data}))).into_response()
}

fn path_id(parts: Result<Path<Snowflake>, ApiError>) -> HypeResult<Snowflake> {
    Ok(parts?.0)
}

fn lower_status(s: Status) -> &'static str {
    match s {
        Status::Online => "online",
        Status::Idle => "idle",
        Status::Dnd => "dnd",
        Status::Offline | Status::Invisible => "offline",
    }
}

/// The seed's discriminator: the first four characters of the username.
fn discriminator(username: &str) -> String {
    username.chars().take(4).collect()
}

/// The signed-in user as the auth routes show it.
fn auth_user(u: &SelfUser) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "email": u.email,
        "avatarUrl": u.avatar,
        "status": "ONLINE",
        "isGuest": u.is_guest,
        "createdAt": u.created_at,
    })
}

fn tokens(done: &LoginSuccess) -> Value {
    json!({
        "user": auth_user(&done.user),
        "accessToken": done.access_token,
        "refreshToken": done.refresh_token,
    })
}

/// A user of `/api/users`: never an e-mail but the caller's own.
fn directory_user(e: &DirectoryEntry, own_email: Option<&str>) -> Value {
    let u = &e.user;
    json!({
        "id": u.id,
        "username": u.username,
        "email": own_email,
        "displayName": u.display_name,
        "discriminator": discriminator(&u.username),
        "status": lower_status(e.status),
        "customStatus": e.custom_status,
        "avatarUrl": u.avatar,
        "avatar": u.avatar,
        "bio": u.bio,
        "isGuest": u.is_guest,
        "createdAt": u.created_at,
        "updatedAt": u.created_at,
    })
}

fn self_user(u: &SelfUser) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "displayName": u.display_name,
        "discriminator": discriminator(&u.username),
        "status": u.status.to_lowercase(),
        "customStatus": u.custom_status,
        "avatarUrl": u.avatar,
        "avatar": u.avatar,
        "bio": u.bio,
        "isGuest": u.is_guest,
        "createdAt": u.created_at,
        "updatedAt": u.created_at,
    })
}

async fn health(State(s): State<AppState>) -> Response {
    JsonResponse(json!({"status": "ok", "timestamp": s.core.clock.now()})).into_response()
}

async fn api_info() -> Response {
    data(
        StatusCode::OK,
        json!({
            "name": "xcord",
            "version": env!("CARGO_PKG_VERSION"),
            "profile": "hype",
            "endpoints": {
                "auth": "/compat/hype/auth",
                "api": "/compat/hype/api",
                "websocket": "/compat/hype/ws",
            },
        }),
    )
}

/// Registration and guest names already taken answer 400 `{success: false, error}` in this
/// profile, as in the seed; other failures as usual.
fn taken_is_400(e: Error) -> Response {
    let e = ApiError::from(e);
    let rendered = crate::error::canonical(&e);
    if rendered.status == StatusCode::CONFLICT {
        return (
            StatusCode::BAD_REQUEST,
            JsonResponse(json!({"success": false, "error": rendered.message})),
        )
            .into_response();
    }
    HypeError::from(e).into_response()
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
    Body(b, _): Body<Hype, RegisterBody>,
) -> HypeResult {
    limit_address(&s, Tier::Register, &c).await?;
    let req = RegisterRequest {
        email: b.email.clone(),
        username: b.username,
        password: b.password.clone(),
        date_of_birth: None,
    };
    let out = match s.core.register(req, &c).await {
        Ok(out) => out,
        Err(e) => return Ok(taken_is_400(e)),
    };
    match (out.access_token, out.refresh_token, out.user) {
        (Some(access_token), Some(refresh_token), Some(user)) => Ok(data(
            StatusCode::CREATED,
            tokens(&LoginSuccess {
                access_token,
                refresh_token,
                user,
            }),
        )),
        // E-mail verification is required before the first login.
        _ => Ok(data(
            StatusCode::CREATED,
            json!({
                "user": {"id": out.user_id, "username": out.username, "email": out.email},
                "accessToken": null,
                "refreshToken": null,
            }),
        )),
    }
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(
    State(s): State<AppState>,
    Client(c): Client,
    Body(b, _): Body<Hype, LoginBody>,
) -> HypeResult {
    limit_address(&s, Tier::Login, &c).await?;
    let req = LoginRequest {
        email: Some(b.email),
        username: None,
        password: b.password,
        captcha: None,
    };
    match s.core.login(req, &c).await? {
        LoginResponse::Success(done) => Ok(data(StatusCode::OK, tokens(&done))),
        LoginResponse::Mfa(_) => Ok((
            StatusCode::UNAUTHORIZED,
            JsonResponse(json!({
                "success": false,
                "error": "This account uses two-factor authentication; sign in through /api/v1/auth/login",
            })),
        )
            .into_response()),
    }
}

#[derive(Deserialize)]
struct GuestBody {
    username: String,
}

async fn guest(
    State(s): State<AppState>,
    Client(c): Client,
    Body(b, _): Body<Hype, GuestBody>,
) -> HypeResult {
    limit_address(&s, Tier::Register, &c).await?;
    let done = match s.core.guest(&b.username, &c).await {
        Ok(done) => done,
        Err(e) => return Ok(taken_is_400(e)),
    };
    Ok(data(StatusCode::OK, tokens(&done)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(s): State<AppState>, Body(b, _): Body<Hype, RefreshBody>) -> HypeResult {
    let pair = s.core.refresh(&b.refresh_token).await?;
    Ok(data(
        StatusCode::OK,
        json!({"accessToken": pair.access_token, "refreshToken": pair.refresh_token}),
    ))
}

async fn me(State(s): State<AppState>, auth: HypeAuth) -> HypeResult {
    let user = s.core.me(auth.caller()).await?;
    Ok((
        auth.rate,
        data(StatusCode::OK, json!({"user": auth_user(&user)})),
    )
        .into_response())
}

async fn logout(State(s): State<AppState>, auth: HypeAuth) -> HypeResult {
    s.core.logout(&auth.ctx).await?;
    Ok(
        JsonResponse(json!({"success": true, "message": "Logged out successfully"}))
            .into_response(),
    )
}

/// `?limit=&offset=` of the lists that page.
#[derive(Debug, Deserialize)]
struct OffsetQuery {
    #[serde(rename = "channelId")]
    channel_id: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

impl OffsetQuery {
    /// `(offset, limit)`: offset from 0, limit 1–`max` (`default` when absent).
    fn parse(&self, default: u32, max: u32) -> HypeResult<(u64, u32)> {
        let mut bad = Vec::new();
        let limit = match self.limit.as_deref() {
            None => default,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=max).contains(l))
                .unwrap_or_else(|| {
                    bad.push(xcord_types::FieldError::new(
                        "limit",
                        "range",
                        format!("must be 1–{max}"),
                    ));
                    default
                }),
        };
        let offset = match self.offset.as_deref() {
            None => 0,
            Some(o) => o.parse::<u64>().unwrap_or_else(|_| {
                bad.push(xcord_types::FieldError::new(
                    "offset",
                    "range",
                    "must be a whole number from 0",
                ));
                0
            }),
        };
        if !bad.is_empty() {
            return Err(Error::Validation(bad).into());
        }
        Ok((offset, limit))
    }
}

fn meta(total: i64, limit: u32, offset: u64) -> Value {
    json!({"total": total.max(0), "limit": limit, "offset": offset})
}

/// The public user list (no token needed, as in the seed): every account, guests too, with
/// the presence others may see; no e-mail but the caller's own.
async fn list_users(
    State(s): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed<Hype>,
    Query(q): Query<OffsetQuery>,
) -> HypeResult {
    let (offset, limit) = q.parse(100, 1000)?;
    let (users, total) = s.core.user_directory(offset, limit, true).await?;
    let own = match &auth {
        Some(a) => Some(s.core.me(a.caller()).await?),
        None => None,
    };
    let list: Vec<Value> = users
        .iter()
        .map(|e| {
            let email = own
                .as_ref()
                .filter(|me| me.id == e.user.id)
                .and_then(|me| me.email.as_deref());
            directory_user(e, email)
        })
        .collect();
    Ok(
        JsonResponse(json!({"success": true, "data": list, "meta": meta(total, limit, offset)}))
            .into_response(),
    )
}

async fn get_user(
    State(s): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed<Hype>,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    if let Some(a) = auth.as_ref().filter(|a| a.caller().user_id == id) {
        let me = s.core.me(a.caller()).await?;
        return Ok(data(StatusCode::OK, self_user(&me)));
    }
    let entry = s.core.directory_entry(id).await?;
    Ok(data(StatusCode::OK, directory_user(&entry, None)))
}

/// Only the caller's own profile: another user's id is 403, as in the seed.
fn require_self(auth: &HypeAuth, id: Snowflake) -> HypeResult<()> {
    if auth.caller().user_id != id {
        return Err(Error::Denied(xcord_core::Denial::NotSelf(
            xcord_core::SelfAction::EditProfile,
        ))
        .into());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileBody {
    username: Option<String>,
    #[serde(default, deserialize_with = "xcord_types::rest::double_option")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "xcord_types::rest::double_option")]
    bio: Option<Option<String>>,
    #[serde(default, deserialize_with = "xcord_types::rest::double_option")]
    avatar_url: Option<Option<String>>,
}

async fn update_user(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
    Body(b, _): Body<Hype, ProfileBody>,
) -> HypeResult {
    let id = path_id(id)?;
    require_self(&auth, id)?;
    // Avatars are uploaded files here (`POST /api/v1/users/@me/avatar`); a link to an
    // image elsewhere cannot be stored as one. `null` leaves the avatar as it is.
    if let Some(Some(_)) = b.avatar_url {
        return Err(Error::invalid(
            "avatarUrl",
            "unsupported",
            "upload the image through POST /api/v1/users/@me/avatar",
        )
        .into());
    }
    let user = s
        .core
        .update_me(
            auth.caller(),
            UpdateSelfRequest {
                username: b.username,
                display_name: b.display_name,
                bio: b.bio,
                ..Default::default()
            },
        )
        .await?;
    Ok((auth.rate, data(StatusCode::OK, self_user(&user))).into_response())
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
}

async fn set_status(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
    Body(b, _): Body<Hype, StatusBody>,
) -> HypeResult {
    let id = path_id(id)?;
    require_self(&auth, id)?;
    let status = match b.status.to_ascii_lowercase().as_str() {
        "online" => Status::Online,
        "idle" => Status::Idle,
        "dnd" => Status::Dnd,
        // The seed's `offline` is being invisible: connected, shown offline.
        "offline" | "invisible" => Status::Invisible,
        _ => {
            return Err(Error::invalid(
                "status",
                "enum",
                "must be one of online, idle, dnd, offline",
            )
            .into());
        }
    };
    s.core
        .set_status(
            auth.caller(),
            StatusRequest {
                status,
                custom_status: None,
            },
        )
        .await?;
    let me = s.core.me(auth.caller()).await?;
    let mut user = self_user(&me);
    user["status"] = json!(lower_status(status));
    Ok((auth.rate, data(StatusCode::OK, user)).into_response())
}

/// Names of users by id, read once per request.
#[derive(Default)]
struct Names(HashMap<Snowflake, (String, Option<String>)>);

impl Names {
    async fn of(&mut self, s: &AppState, id: Snowflake) -> (String, Option<String>) {
        if let Some(n) = self.0.get(&id) {
            return n.clone();
        }
        let n = s
            .core
            .public_profile(id)
            .await
            .map(|u| (u.username, u.avatar))
            .unwrap_or_default();
        self.0.insert(id, n.clone());
        n
    }
}

async fn server_json(s: &AppState, names: &mut Names, server: &Server) -> Value {
    let (owner_name, owner_avatar) = names.of(s, server.owner_id).await;
    let channels = server.channels.as_ref().map_or(0, Vec::len);
    json!({
        "id": server.id,
        "name": server.name,
        "description": server.description,
        "iconUrl": server.icon,
        "bannerUrl": server.banner,
        "ownerId": server.owner_id,
        "owner": {"id": server.owner_id, "username": owner_name, "avatarUrl": owner_avatar},
        "isDefault": s.core.settings.default_server == Some(server.id),
        "_count": {"members": server.member_count, "channels": channels},
        "createdAt": server.created_at,
        "updatedAt": server.created_at,
    })
}

/// The caller's servers, the default server first (the client lists it first).
async fn list_servers(State(s): State<AppState>, auth: HypeAuth) -> HypeResult {
    let mine = s.core.my_servers(auth.caller()).await?;
    let mut names = Names::default();
    let mut out = Vec::with_capacity(mine.servers.len());
    for server in &mine.servers {
        // With its channels, for the counts.
        let full = s.core.get_server(auth.caller(), server.id).await?;
        out.push(server_json(&s, &mut names, &full).await);
    }
    let default = s.core.settings.default_server.map(|d| d.to_string());
    out.sort_by_key(|v| v["id"].as_str() != default.as_deref());
    Ok((auth.rate, data(StatusCode::OK, Value::Array(out))).into_response())
}

async fn get_server(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    let server = s.core.get_server(auth.caller(), id).await?;
    let body = server_json(&s, &mut Names::default(), &server).await;
    Ok((auth.rate, data(StatusCode::OK, body)).into_response())
}

fn kind_name(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::Text => "TEXT",
        ChannelKind::Voice => "VOICE",
        ChannelKind::Category => "CATEGORY",
        ChannelKind::Dm => "DM",
        ChannelKind::GroupDm => "GROUP_DM",
    }
}

async fn channel_json(s: &AppState, c: &Channel, server_name: Option<&str>) -> HypeResult<Value> {
    let messages = match c.kind {
        ChannelKind::Text => s
            .core
            .store
            .message_count(c.id)
            .await
            .map_err(Error::from)?,
        _ => 0,
    };
    let voice_states = match c.kind {
        ChannelKind::Voice => s.core.voice.of_channel(c.id).len(),
        _ => 0,
    };
    Ok(json!({
        "id": c.id,
        "name": c.name,
        "type": kind_name(c.kind),
        "topic": c.topic,
        "position": c.position,
        "serverId": c.server_id,
        "userLimit": c.user_limit,
        "bitrate": c.bitrate.map(|b| b / 1000),
        "server": c.server_id.map(|id| json!({"id": id, "name": server_name})),
        "_count": {"messages": messages, "voiceStates": voice_states},
        "createdAt": c.created_at,
        "updatedAt": c.created_at,
    }))
}

async fn channels_json(s: &AppState, server: &Server) -> HypeResult<Vec<Value>> {
    let mut out = Vec::new();
    for c in server.channels.iter().flatten() {
        out.push(channel_json(s, c, Some(&server.name)).await?);
    }
    Ok(out)
}

async fn server_channels(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    let server = s.core.get_server(auth.caller(), id).await?;
    let list = channels_json(&s, &server).await?;
    Ok((auth.rate, data(StatusCode::OK, Value::Array(list))).into_response())
}

/// Every channel the caller can see in its servers, the default server's first.
async fn list_channels(State(s): State<AppState>, auth: HypeAuth) -> HypeResult {
    let mut mine = s.core.my_servers(auth.caller()).await?.servers;
    let default = s.core.settings.default_server;
    mine.sort_by_key(|server| Some(server.id) != default);
    let mut out = Vec::new();
    for server in &mine {
        let full = s.core.get_server(auth.caller(), server.id).await?;
        out.extend(channels_json(&s, &full).await?);
    }
    Ok((auth.rate, data(StatusCode::OK, Value::Array(out))).into_response())
}

async fn channel_of(s: &AppState, caller: &Caller, id: Snowflake) -> HypeResult<Value> {
    let c = s.core.get_channel(caller, id).await?;
    let server_name = match c.server_id {
        Some(sid) => Some(s.core.get_server(caller, sid).await?.name),
        None => None,
    };
    channel_json(s, &c, server_name.as_deref()).await
}

async fn get_channel(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    let body = channel_of(&s, auth.caller(), id).await?;
    Ok((auth.rate, data(StatusCode::OK, body)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewChannelBody {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    server_id: Option<Snowflake>,
    topic: Option<String>,
}

/// `POST /api/channels {name, type: text|voice, serverId?}`: in `serverId`, or the default
/// server.
async fn create_channel(
    State(s): State<AppState>,
    auth: HypeAuth,
    Body(b, _): Body<Hype, NewChannelBody>,
) -> HypeResult {
    let server = b
        .server_id
        .or(s.core.settings.default_server)
        .ok_or_else(|| Error::invalid("serverId", "required", "name the server"))?;
    let kind = match b.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("text") => NewChannelKind::Text,
        Some("voice") => NewChannelKind::Voice,
        _ => {
            return Err(Error::invalid("type", "enum", "must be text or voice").into());
        }
    };
    let c = s
        .core
        .create_channel(
            auth.caller(),
            server,
            CreateChannelRequest::new(b.name, kind, b.topic),
        )
        .await?;
    let body = channel_of(&s, auth.caller(), c.id).await?;
    Ok((auth.rate, data(StatusCode::CREATED, body)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelPatchBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "xcord_types::rest::double_option")]
    topic: Option<Option<String>>,
    position: Option<i64>,
}

async fn update_channel(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
    Body(b, _): Body<Hype, ChannelPatchBody>,
) -> HypeResult {
    let id = path_id(id)?;
    s.core
        .update_channel(
            auth.caller(),
            id,
            UpdateChannelRequest {
                name: b.name,
                topic: b.topic,
                position: b.position,
                ..Default::default()
            },
            None,
        )
        .await?;
    let body = channel_of(&s, auth.caller(), id).await?;
    Ok((auth.rate, data(StatusCode::OK, body)).into_response())
}

async fn delete_channel(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    s.core.delete_channel(auth.caller(), id).await?;
    Ok((auth.rate, data(StatusCode::OK, json!({"id": id}))).into_response())
}

/// A message as the seed shows it; `status` is the author's presence, upper case.
async fn message_json(
    s: &AppState,
    presence: &mut HashMap<Snowflake, Value>,
    m: &Message,
) -> Value {
    let author = m.author.id;
    if let std::collections::hash_map::Entry::Vacant(slot) = presence.entry(author) {
        let entry = s.core.directory_entry(author).await.ok();
        slot.insert(json!({
            "displayName": entry.as_ref().and_then(|e| e.user.display_name.clone()),
            "status": upper_status(entry.map_or(Status::Offline, |e| e.status)),
        }));
    }
    let extra = &presence[&author];
    xcord_types::compat::hype::message(
        m,
        extra["displayName"].as_str(),
        extra["status"].as_str().unwrap_or("OFFLINE"),
    )
}

/// `GET /api/messages?channelId=&limit=&offset=`: offset 0 is the newest `limit` messages,
/// each page oldest first; `meta {total, limit, offset}`.
async fn history(
    State(s): State<AppState>,
    auth: HypeAuth,
    Query(q): Query<OffsetQuery>,
) -> HypeResult {
    let channel = q
        .channel_id
        .as_deref()
        .ok_or_else(|| Error::invalid("channelId", "required", "name the channel"))?
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(Snowflake::from_i64)
        .ok_or(Error::NotFound(xcord_core::Entity::Channel))?;
    let (offset, limit) = q.parse(50, 100)?;
    let page = s
        .core
        .history_page(auth.caller(), channel, offset, limit)
        .await?;
    let mut presence = HashMap::new();
    let mut list = Vec::with_capacity(page.messages.len());
    for m in &page.messages {
        list.push(message_json(&s, &mut presence, m).await);
    }
    Ok((
        auth.rate,
        JsonResponse(json!({
            "success": true,
            "data": list,
            "meta": meta(page.total, limit, offset),
        })),
    )
        .into_response())
}

/// The channel of message `id` (the seed's message routes name only the message).
async fn message_channel(s: &AppState, id: Snowflake) -> HypeResult<Snowflake> {
    Ok(s.core
        .store
        .live_message(id)
        .await
        .map_err(Error::from)?
        .ok_or(Error::NotFound(xcord_core::Entity::Message))?
        .channel_id)
}

async fn get_message(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    let channel = message_channel(&s, id).await?;
    let m = s.core.get_message(auth.caller(), channel, id).await?;
    let body = message_json(&s, &mut HashMap::new(), &m).await;
    Ok((auth.rate, data(StatusCode::OK, body)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    content: String,
    channel_id: Snowflake,
}

async fn send(
    State(s): State<AppState>,
    auth: HypeAuth,
    Body(b, _): Body<Hype, SendBody>,
) -> HypeResult {
    let (m, _) = s
        .core
        .post_message(
            auth.caller(),
            b.channel_id,
            CreateMessageRequest {
                content: Some(b.content),
                ..Default::default()
            },
        )
        .await?;
    let body = message_json(&s, &mut HashMap::new(), &m).await;
    Ok((auth.rate, data(StatusCode::CREATED, body)).into_response())
}

#[derive(Deserialize)]
struct EditBody {
    content: String,
}

async fn edit_message(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
    Body(b, _): Body<Hype, EditBody>,
) -> HypeResult {
    let id = path_id(id)?;
    let channel = message_channel(&s, id).await?;
    let m = s
        .core
        .edit_message(
            auth.caller(),
            channel,
            id,
            EditMessageRequest { content: b.content },
            None,
        )
        .await?;
    let body = message_json(&s, &mut HashMap::new(), &m).await;
    Ok((auth.rate, data(StatusCode::OK, body)).into_response())
}

async fn delete_message(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<Snowflake>, ApiError>,
) -> HypeResult {
    let id = path_id(id)?;
    let channel = message_channel(&s, id).await?;
    s.core.delete_message(auth.caller(), channel, id).await?;
    Ok((auth.rate, data(StatusCode::OK, json!({"id": id}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_fields_become_the_seed_validation_shape() {
        let fields = vec![xcord_types::FieldError::new(
            "username",
            "length",
            "must be 3–32 characters",
        )];
        let (status, body) = Hype::error_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid username".into(),
            serde_json::to_value(&fields).ok(),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"success": false, "error": "Validation failed", "details": [
                {"code": "length", "path": ["username"], "message": "must be 3–32 characters"}
            ]})
        );
        let (status, body) = Hype::error_body(StatusCode::NOT_FOUND, "Unknown user.".into(), None);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"success": false, "error": "Unknown user."}));
    }

    #[test]
    fn statuses_and_discriminators_follow_the_seed() {
        assert_eq!(upper_status(Status::Invisible), "OFFLINE");
        assert_eq!(lower_status(Status::Dnd), "dnd");
        assert_eq!(discriminator("ab"), "ab");
        assert_eq!(discriminator("alice"), "alic");
    }
}
