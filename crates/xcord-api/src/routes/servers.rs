//! `/servers/*`, `/channels/*` and `/invites/*`.

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xcord_types::rest::channels::{
    Channel, ChannelList, CreateChannelRequest, PutOverwriteRequest, UpdateChannelRequest,
};
use xcord_types::rest::servers::{
    AuditLog, AuditQuery, BanList, BanRequest, CreateInviteRequest, CreateServerRequest, Invite,
    InviteList, Member, MemberList, MemberQuery, ReasonRequest, Role, RoleList, RoleRequest,
    Server, ServerList, ServerStats, UpdateMemberRequest, UpdateServerRequest,
};
use xcord_types::{ErrorBody, Snowflake};

use crate::AppState;
use crate::auth::{Auth, IfMatch, UserRef};
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson, Path, Query};

type ApiResult<T> = Result<T, ApiError>;

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, JsonResponse(v)).into_response()
}

/// The caller's servers.
#[utoipa::path(get, path = "/servers", tag = "servers", responses((status = 200, description = "Servers", body = ServerList)))]
pub async fn list_servers(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<ServerList>> {
    Ok(JsonResponse(s.core.my_servers(auth.caller()).await?))
}

/// Create a server with `@everyone`, `general` and `General`.
#[utoipa::path(post, path = "/servers", tag = "servers", request_body = CreateServerRequest, responses(
    (status = 201, description = "Created", body = Server), (status = 422, description = "Invalid name or icon", body = ErrorBody)))]
pub async fn create_server(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<CreateServerRequest>,
) -> ApiResult<Response> {
    Ok(created(s.core.create_server(auth.caller(), req).await?))
}

/// A server with the channels the caller can see and its roles.
#[utoipa::path(get, path = "/servers/{id}", tag = "servers", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Server", body = Server), (status = 404, description = "No such server, or not a member", body = ErrorBody)))]
pub async fn get_server(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<Server>> {
    Ok(JsonResponse(s.core.get_server(auth.caller(), id).await?))
}

/// Change a server (MANAGE_SERVER; `ownerId` by the owner). `If-Match: <version>` guards against lost updates.
#[utoipa::path(patch, path = "/servers/{id}", tag = "servers",
    params(("id" = Snowflake, Path), ("If-Match" = Option<u64>, Header, description = "The `version` the change is based on; a stale one is refused with 409")),
    request_body = UpdateServerRequest, responses(
    (status = 200, description = "Updated", body = Server), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 409, description = "Stale If-Match or vanity URL taken", body = ErrorBody)))]
pub async fn patch_server(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    IfMatch(v): IfMatch,
    Json(req): Json<UpdateServerRequest>,
) -> ApiResult<JsonResponse<Server>> {
    Ok(JsonResponse(
        s.core.update_server(auth.caller(), id, req, v).await?,
    ))
}

/// Delete a server (owner only).
#[utoipa::path(delete, path = "/servers/{id}", tag = "servers", params(("id" = Snowflake, Path)), responses(
    (status = 204, description = "Deleted"), (status = 403, description = "Not the owner", body = ErrorBody)))]
pub async fn delete_server(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    s.core.delete_server(auth.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Member count, online count, channel count and messages per day (30 days).
#[utoipa::path(get, path = "/servers/{id}/stats", tag = "servers", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Statistics", body = ServerStats)))]
pub async fn server_stats(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<ServerStats>> {
    Ok(JsonResponse(s.core.server_stats(auth.caller(), id).await?))
}

/// Channels of a server the caller can see.
#[utoipa::path(get, path = "/servers/{id}/channels", tag = "channels", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Channels", body = ChannelList)))]
pub async fn list_channels(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<ChannelList>> {
    Ok(JsonResponse(
        s.core.server_channels(auth.caller(), id).await?,
    ))
}

/// Create a text, voice or category channel (MANAGE_CHANNELS).
#[utoipa::path(post, path = "/servers/{id}/channels", tag = "channels", params(("id" = Snowflake, Path)),
    request_body = CreateChannelRequest, responses(
    (status = 201, description = "Created", body = Channel), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 422, description = "Invalid fields", body = ErrorBody)))]
pub async fn create_channel(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Json(req): Json<CreateChannelRequest>,
) -> ApiResult<Response> {
    Ok(created(
        s.core.create_channel(auth.caller(), id, req).await?,
    ))
}

/// A channel (server channels the caller can see; private channels they are in).
#[utoipa::path(get, path = "/channels/{id}", tag = "channels", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Channel", body = Channel), (status = 404, description = "No such channel, or hidden", body = ErrorBody)))]
pub async fn get_channel(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<Channel>> {
    Ok(JsonResponse(s.core.get_channel(auth.caller(), id).await?))
}

/// Change a channel (MANAGE_CHANNELS in it). `If-Match: <version>` guards against lost updates.
#[utoipa::path(patch, path = "/channels/{id}", tag = "channels",
    params(("id" = Snowflake, Path), ("If-Match" = Option<u64>, Header, description = "The `version` the change is based on; a stale one is refused with 409")),
    request_body = UpdateChannelRequest, responses(
    (status = 200, description = "Updated", body = Channel), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 409, description = "Stale If-Match", body = ErrorBody)))]
pub async fn patch_channel(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    IfMatch(v): IfMatch,
    Json(req): Json<UpdateChannelRequest>,
) -> ApiResult<JsonResponse<Channel>> {
    Ok(JsonResponse(
        s.core.update_channel(auth.caller(), id, req, v).await?,
    ))
}

/// Delete a channel (MANAGE_CHANNELS in it).
#[utoipa::path(delete, path = "/channels/{id}", tag = "channels", params(("id" = Snowflake, Path)), responses(
    (status = 204, description = "Deleted"), (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn delete_channel(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    s.core.delete_channel(auth.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a channel's overwrite for a role or member (MANAGE_ROLES in the channel).
#[utoipa::path(put, path = "/channels/{id}/permissions/{targetId}", tag = "channels",
    params(("id" = Snowflake, Path), ("targetId" = Snowflake, Path, description = "Role id (server id for @everyone) or user id")),
    request_body = PutOverwriteRequest, responses(
    (status = 204, description = "Set"), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 404, description = "No such channel, role or member", body = ErrorBody)))]
pub async fn put_overwrite(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, target)): Path<(Snowflake, Snowflake)>,
    Json(req): Json<PutOverwriteRequest>,
) -> ApiResult<StatusCode> {
    s.core.put_overwrite(auth.caller(), id, target, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a channel's overwrite.
#[utoipa::path(delete, path = "/channels/{id}/permissions/{targetId}", tag = "channels",
    params(("id" = Snowflake, Path), ("targetId" = Snowflake, Path)), responses(
    (status = 204, description = "Removed"), (status = 404, description = "No such overwrite", body = ErrorBody),
    (status = 403, description = "Not permitted")))]
pub async fn delete_overwrite(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, target)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.delete_overwrite(auth.caller(), id, target).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Roles of a server, lowest first.
#[utoipa::path(get, path = "/servers/{id}/roles", tag = "roles", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Roles", body = RoleList)))]
pub async fn list_roles(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<RoleList>> {
    Ok(JsonResponse(s.core.roles(auth.caller(), id).await?))
}

/// Create a role (MANAGE_ROLES; only permissions the caller has).
#[utoipa::path(post, path = "/servers/{id}/roles", tag = "roles", params(("id" = Snowflake, Path)),
    request_body = RoleRequest, responses(
    (status = 201, description = "Created", body = Role), (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn create_role(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Json(req): Json<RoleRequest>,
) -> ApiResult<Response> {
    Ok(created(s.core.create_role(auth.caller(), id, req).await?))
}

/// Change a role below the caller's highest role. `If-Match: <version>` guards against lost updates.
#[utoipa::path(patch, path = "/servers/{id}/roles/{roleId}", tag = "roles",
    params(("id" = Snowflake, Path), ("roleId" = Snowflake, Path), ("If-Match" = Option<u64>, Header, description = "The `version` the change is based on; a stale one is refused with 409")), request_body = RoleRequest, responses(
    (status = 200, description = "Updated", body = Role), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 409, description = "Stale If-Match", body = ErrorBody)))]
pub async fn patch_role(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, role)): Path<(Snowflake, Snowflake)>,
    IfMatch(v): IfMatch,
    Json(req): Json<RoleRequest>,
) -> ApiResult<JsonResponse<Role>> {
    Ok(JsonResponse(
        s.core.update_role(auth.caller(), id, role, req, v).await?,
    ))
}

/// Delete a role below the caller's highest role.
#[utoipa::path(delete, path = "/servers/{id}/roles/{roleId}", tag = "roles",
    params(("id" = Snowflake, Path), ("roleId" = Snowflake, Path)), responses(
    (status = 204, description = "Deleted"), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 400, description = "`@everyone` cannot be deleted")))]
pub async fn delete_role(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, role)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.delete_role(auth.caller(), id, role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members by user id, paged with `after`.
#[utoipa::path(get, path = "/servers/{id}/members", tag = "members", params(("id" = Snowflake, Path), MemberQuery),
    responses((status = 200, description = "Members", body = MemberList)))]
pub async fn list_members(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Query(q): Query<MemberQuery>,
) -> ApiResult<JsonResponse<MemberList>> {
    Ok(JsonResponse(
        s.core.members(auth.caller(), id, q.limit, q.after).await?,
    ))
}

/// One member (`@me` for the caller).
#[utoipa::path(get, path = "/servers/{id}/members/{userId}", tag = "members",
    params(("id" = Snowflake, Path), ("userId" = String, Path, description = "User id or `@me`")), responses(
    (status = 200, description = "Member", body = Member), (status = 404, description = "Not a member", body = ErrorBody)))]
pub async fn get_member(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user)): Path<(Snowflake, UserRef)>,
) -> ApiResult<JsonResponse<Member>> {
    Ok(JsonResponse(
        s.core
            .member(auth.caller(), id, user.resolve(auth.caller()))
            .await?,
    ))
}

/// Change a member's nickname or roles.
#[utoipa::path(patch, path = "/servers/{id}/members/{userId}", tag = "members",
    params(("id" = Snowflake, Path), ("userId" = String, Path, description = "User id or `@me`")), request_body = UpdateMemberRequest, responses(
    (status = 200, description = "Updated", body = Member), (status = 403, description = "Not permitted or outranked", body = ErrorBody)))]
pub async fn patch_member(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user)): Path<(Snowflake, UserRef)>,
    Json(req): Json<UpdateMemberRequest>,
) -> ApiResult<JsonResponse<Member>> {
    Ok(JsonResponse(
        s.core
            .update_member(auth.caller(), id, user.resolve(auth.caller()), req)
            .await?,
    ))
}

/// `@me`: leave the server (the owner must transfer it first). Another user: kick them.
#[utoipa::path(delete, path = "/servers/{id}/members/{userId}", tag = "members",
    params(("id" = Snowflake, Path), ("userId" = String, Path, description = "`@me` to leave")), responses(
    (status = 204, description = "Left / kicked"), (status = 400, description = "The owner cannot leave", body = ErrorBody),
    (status = 403, description = "Not permitted or outranked")))]
pub async fn delete_member(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user)): Path<(Snowflake, UserRef)>,
) -> ApiResult<StatusCode> {
    match user {
        UserRef::Me => s.core.leave_server(auth.caller(), id).await?,
        UserRef::Id(u) if u == auth.caller().user_id => {
            s.core.leave_server(auth.caller(), id).await?
        }
        UserRef::Id(u) => s.core.kick(auth.caller(), id, u, None).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Give a member a role.
#[utoipa::path(put, path = "/servers/{id}/members/{userId}/roles/{roleId}", tag = "members",
    params(("id" = Snowflake, Path), ("userId" = String, Path, description = "User id or `@me`"), ("roleId" = Snowflake, Path)), responses(
    (status = 204, description = "Given"), (status = 403, description = "Not permitted or outranked", body = ErrorBody)))]
pub async fn put_member_role(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user, role)): Path<(Snowflake, UserRef, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core
        .set_member_role(auth.caller(), id, user.resolve(auth.caller()), role, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a role from a member.
#[utoipa::path(delete, path = "/servers/{id}/members/{userId}/roles/{roleId}", tag = "members",
    params(("id" = Snowflake, Path), ("userId" = String, Path, description = "User id or `@me`"), ("roleId" = Snowflake, Path)), responses(
    (status = 204, description = "Taken"), (status = 403, description = "Not permitted or outranked", body = ErrorBody)))]
pub async fn delete_member_role(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user, role)): Path<(Snowflake, UserRef, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core
        .set_member_role(auth.caller(), id, user.resolve(auth.caller()), role, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Kick a member (KICK_MEMBERS, hierarchy).
#[utoipa::path(post, path = "/servers/{id}/members/{userId}/kick", tag = "moderation",
    params(("id" = Snowflake, Path), ("userId" = Snowflake, Path)), request_body(content = Option<ReasonRequest>), responses(
    (status = 204, description = "Kicked"), (status = 403, description = "Not permitted or outranked", body = ErrorBody),
    (status = 400, description = "You cannot kick yourself or the owner")))]
pub async fn kick(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user)): Path<(Snowflake, Snowflake)>,
    OptionalJson(req): OptionalJson<ReasonRequest>,
) -> ApiResult<StatusCode> {
    s.core.kick(auth.caller(), id, user, req.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ban a user, optionally deleting their messages of the last 0–7 days (BAN_MEMBERS, hierarchy).
#[utoipa::path(post, path = "/servers/{id}/bans", tag = "moderation", params(("id" = Snowflake, Path)),
    request_body = BanRequest, responses(
    (status = 204, description = "Banned"), (status = 403, description = "Not permitted or outranked", body = ErrorBody),
    (status = 400, description = "You cannot ban yourself")))]
pub async fn ban(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Json(req): Json<BanRequest>,
) -> ApiResult<StatusCode> {
    s.core.ban(auth.caller(), id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bans of a server (BAN_MEMBERS).
#[utoipa::path(get, path = "/servers/{id}/bans", tag = "moderation", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Bans", body = BanList),
    (status = 403, description = "Not permitted")))]
pub async fn list_bans(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<BanList>> {
    Ok(JsonResponse(s.core.bans(auth.caller(), id).await?))
}

/// Lift a ban (BAN_MEMBERS).
#[utoipa::path(delete, path = "/servers/{id}/bans/{userId}", tag = "moderation",
    params(("id" = Snowflake, Path), ("userId" = Snowflake, Path)), responses(
    (status = 204, description = "Lifted"), (status = 404, description = "No such ban", body = ErrorBody),
    (status = 403, description = "Not permitted")))]
pub async fn unban(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, user)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.unban(auth.caller(), id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an invite (CREATE_INVITE).
#[utoipa::path(post, path = "/servers/{id}/invites", tag = "invites", params(("id" = Snowflake, Path)),
    request_body(content = Option<CreateInviteRequest>), responses(
    (status = 201, description = "Created", body = Invite), (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn create_invite(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    OptionalJson(req): OptionalJson<CreateInviteRequest>,
) -> ApiResult<Response> {
    Ok(created(s.core.create_invite(auth.caller(), id, req).await?))
}

/// Invites of a server (MANAGE_SERVER).
#[utoipa::path(get, path = "/servers/{id}/invites", tag = "invites", params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Invites", body = InviteList),
    (status = 403, description = "Not permitted")))]
pub async fn list_invites(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<InviteList>> {
    Ok(JsonResponse(s.core.invites(auth.caller(), id).await?))
}

/// Preview an invite (or vanity code) without joining; no token needed.
#[utoipa::path(get, path = "/invites/{code}", tag = "invites", params(("code" = String, Path)), responses(
    (status = 200, description = "Invite", body = Invite), (status = 404, description = "Unknown, expired or used up", body = ErrorBody)))]
pub async fn preview_invite(
    State(s): State<AppState>,
    Path(code): Path<String>,
) -> ApiResult<JsonResponse<Invite>> {
    Ok(JsonResponse(s.core.preview_invite(&code).await?))
}

/// Join through an invite (or vanity code); banned users are refused.
#[utoipa::path(post, path = "/invites/{code}", tag = "invites", params(("code" = String, Path)), responses(
    (status = 200, description = "Joined; the server", body = Server), (status = 403, description = "Banned", body = ErrorBody),
    (status = 404, description = "Unknown, expired or used up", body = ErrorBody)))]
pub async fn accept_invite(
    State(s): State<AppState>,
    auth: Auth,
    Path(code): Path<String>,
) -> ApiResult<JsonResponse<Server>> {
    Ok(JsonResponse(
        s.core.accept_invite(auth.caller(), &code).await?,
    ))
}

/// Delete an invite (its creator or MANAGE_SERVER).
#[utoipa::path(delete, path = "/invites/{code}", tag = "invites", params(("code" = String, Path)), responses(
    (status = 204, description = "Deleted"), (status = 404, description = "Unknown", body = ErrorBody),
    (status = 403, description = "Neither its creator nor MANAGE_SERVER")))]
pub async fn delete_invite(
    State(s): State<AppState>,
    auth: Auth,
    Path(code): Path<String>,
) -> ApiResult<StatusCode> {
    s.core.delete_invite(auth.caller(), &code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log, newest first (VIEW_AUDIT_LOG).
#[utoipa::path(get, path = "/servers/{id}/audit-log", tag = "moderation", params(("id" = Snowflake, Path), AuditQuery),
    responses((status = 200, description = "Entries", body = AuditLog), (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn audit_log(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<JsonResponse<AuditLog>> {
    Ok(JsonResponse(s.core.audit_log(auth.caller(), id, q).await?))
}
