//! `/users/*`: profiles, settings, search, status and presence, relationships, keys, images,
//! and DM channels.

use axum::Json as JsonResponse;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xcord_core::media::MAX_PROFILE_IMAGE_BYTES;
use xcord_core::{Denial, Error, SelfAction, Upload};
use xcord_types::rest::channels::{Channel, ChannelList, CreateDmRequest};
use xcord_types::rest::messages::FileUpload;
use xcord_types::rest::users::{
    AvatarResponse, BannerResponse, OnlineCount, OnlineList, Presence, PublicKey, PublicKeyRequest,
    PublicUser, RelationshipAction, RelationshipList, RelationshipRequest, SelfUser, Settings,
    SettingsPatch, StatusRequest, UpdateSelfRequest, UserList, UserSearchQuery,
};
use xcord_types::{ErrorBody, Snowflake};

use crate::AppState;
use crate::auth::{Auth, UserRef};
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson, Path, Query};

type ApiResult<T> = Result<T, ApiError>;

/// The signed-in user.
#[utoipa::path(get, path = "/users/@me", tag = "users", responses(
    (status = 200, description = "The user, with e-mail", body = SelfUser)))]
pub async fn get_me(State(s): State<AppState>, auth: Auth) -> ApiResult<JsonResponse<SelfUser>> {
    Ok(JsonResponse(s.core.me(auth.caller()).await?))
}

/// Change the profile; e-mail and password need `currentPassword` (a guest sets both to upgrade).
#[utoipa::path(patch, path = "/users/@me", tag = "users", request_body = UpdateSelfRequest, responses(
    (status = 200, description = "Updated", body = SelfUser),
    (status = 403, description = "Wrong current password", body = ErrorBody),
    (status = 409, description = "Username or e-mail taken", body = ErrorBody),
    (status = 422, description = "Invalid fields", body = ErrorBody)))]
pub async fn patch_me(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<UpdateSelfRequest>,
) -> ApiResult<JsonResponse<SelfUser>> {
    Ok(JsonResponse(s.core.update_me(auth.caller(), req).await?))
}

/// A user's public profile (never an e-mail).
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id or `@me`")), responses(
    (status = 200, description = "Profile", body = PublicUser), (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn get_user(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<UserRef>,
) -> ApiResult<JsonResponse<PublicUser>> {
    Ok(JsonResponse(
        s.core.public_profile(id.resolve(auth.caller())).await?,
    ))
}

/// Change a profile: only one's own.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UpdateSelfRequest,
    params(("id" = String, Path, description = "Must be the caller's id or `@me`")), responses(
    (status = 200, description = "Updated", body = SelfUser), (status = 403, description = "Not yourself", body = ErrorBody),
    (status = 409, description = "Username or e-mail taken")))]
pub async fn patch_user(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<UserRef>,
    Json(req): Json<UpdateSelfRequest>,
) -> ApiResult<JsonResponse<SelfUser>> {
    if id.resolve(auth.caller()) != auth.caller().user_id {
        return Err(Error::Denied(Denial::NotSelf(SelfAction::EditProfile)).into());
    }
    Ok(JsonResponse(s.core.update_me(auth.caller(), req).await?))
}

/// The caller's settings.
#[utoipa::path(get, path = "/users/@me/settings", tag = "users", responses(
    (status = 200, description = "Settings", body = Settings)))]
pub async fn get_settings(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<Settings>> {
    Ok(JsonResponse(s.core.settings(auth.caller()).await?))
}

/// Change some settings.
#[utoipa::path(patch, path = "/users/@me/settings", tag = "users", request_body = SettingsPatch, responses(
    (status = 200, description = "Settings after the change", body = Settings),
    (status = 422, description = "Invalid value", body = ErrorBody)))]
pub async fn patch_settings(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<SettingsPatch>,
) -> ApiResult<JsonResponse<Settings>> {
    Ok(JsonResponse(
        s.core.update_settings(auth.caller(), req).await?,
    ))
}

/// Find users by username prefix.
#[utoipa::path(get, path = "/users/search", tag = "users", params(UserSearchQuery), responses(
    (status = 200, description = "Matches", body = UserList), (status = 422, description = "Bad `q` or `limit`", body = ErrorBody)))]
pub async fn search(
    State(s): State<AppState>,
    auth: Auth,
    Query(q): Query<UserSearchQuery>,
) -> ApiResult<JsonResponse<UserList>> {
    Ok(JsonResponse(
        s.core
            .search_users(auth.caller(), q.q.as_deref(), q.limit)
            .await?,
    ))
}

/// Set presence status and custom status.
#[utoipa::path(put, path = "/users/@me/status", tag = "users", request_body = StatusRequest, responses(
    (status = 200, description = "The caller's status", body = Presence), (status = 422, description = "Invalid status", body = ErrorBody)))]
pub async fn put_status(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<StatusRequest>,
) -> ApiResult<JsonResponse<Presence>> {
    Ok(JsonResponse(s.core.set_status(auth.caller(), req).await?))
}

/// How many users are online.
#[utoipa::path(get, path = "/users/online/count", tag = "users", responses(
    (status = 200, description = "Count", body = OnlineCount)))]
pub async fn online_count(
    State(s): State<AppState>,
    _auth: Auth,
) -> ApiResult<JsonResponse<OnlineCount>> {
    Ok(JsonResponse(s.core.online_count().await?))
}

/// Online users the caller shares a server, DM or friendship with.
#[utoipa::path(get, path = "/users/online/list", tag = "users", responses(
    (status = 200, description = "Users", body = OnlineList)))]
pub async fn online_list(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<OnlineList>> {
    Ok(JsonResponse(s.core.online_list(auth.caller()).await?))
}

/// A user's presence, for users the caller shares something with.
#[utoipa::path(get, path = "/users/{id}/presence", tag = "users",
    params(("id" = String, Path, description = "User id or `@me`")), responses(
    (status = 200, description = "Presence", body = Presence),
    (status = 403, description = "Nothing shared with this user", body = ErrorBody),
    (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn presence(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<UserRef>,
) -> ApiResult<JsonResponse<Presence>> {
    Ok(JsonResponse(
        s.core
            .presence_of(auth.caller(), id.resolve(auth.caller()))
            .await?,
    ))
}

/// The caller's friends, requests and blocks.
#[utoipa::path(get, path = "/users/@me/relationships", tag = "users", responses(
    (status = 200, description = "Relationships", body = RelationshipList)))]
pub async fn relationships(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<RelationshipList>> {
    Ok(JsonResponse(s.core.relationships(auth.caller()).await?))
}

/// Send or accept a friend request (`{}` or `{type: "friend"}`), or block (`{type: "block"}`).
#[utoipa::path(put, path = "/users/@me/relationships/{userId}", tag = "users",
    request_body(content = Option<RelationshipRequest>, description = "Optional; defaults to a friend request"),
    params(("userId" = Snowflake, Path, description = "The other user")), responses(
    (status = 204, description = "Done"),
    (status = 403, description = "Blocked", body = ErrorBody),
    (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn put_relationship(
    State(s): State<AppState>,
    auth: Auth,
    Path(other): Path<Snowflake>,
    // The body is optional: an empty PUT is a friend request.
    OptionalJson(req): OptionalJson<RelationshipRequest>,
) -> ApiResult<StatusCode> {
    s.core
        .put_relationship(
            auth.caller(),
            other,
            req.kind.unwrap_or(RelationshipAction::Friend),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a friend, cancel or decline a request, or unblock.
#[utoipa::path(delete, path = "/users/@me/relationships/{userId}", tag = "users",
    params(("userId" = Snowflake, Path, description = "The other user")), responses(
    (status = 204, description = "Removed"), (status = 404, description = "No relationship", body = ErrorBody)))]
pub async fn delete_relationship(
    State(s): State<AppState>,
    auth: Auth,
    Path(other): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    s.core.delete_relationship(auth.caller(), other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish the caller's E2E public key.
#[utoipa::path(put, path = "/users/@me/keys", tag = "users", request_body = PublicKeyRequest, responses(
    (status = 200, description = "Stored", body = PublicKey), (status = 422, description = "Empty or too long", body = ErrorBody)))]
pub async fn put_keys(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<PublicKeyRequest>,
) -> ApiResult<JsonResponse<PublicKey>> {
    Ok(JsonResponse(
        s.core
            .set_public_key(auth.caller(), &req.public_key)
            .await?,
    ))
}

/// The caller's E2E public key.
#[utoipa::path(get, path = "/users/@me/keys", tag = "users", responses(
    (status = 200, description = "Key (null when none)", body = PublicKey)))]
pub async fn get_my_keys(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<PublicKey>> {
    Ok(JsonResponse(
        s.core.public_key(auth.caller().user_id).await?,
    ))
}

/// A user's E2E public key.
#[utoipa::path(get, path = "/users/{id}/keys", tag = "users",
    params(("id" = String, Path, description = "User id or `@me`")), responses(
    (status = 200, description = "Key (null when none)", body = PublicKey), (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn get_keys(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<UserRef>,
) -> ApiResult<JsonResponse<PublicKey>> {
    Ok(JsonResponse(
        s.core.public_key(id.resolve(auth.caller())).await?,
    ))
}

/// Reads the one image of a profile-image upload, refusing more than the limit.
async fn read_image(multipart: Result<Multipart, MultipartRejection>) -> Result<Vec<u8>, ApiError> {
    // The first part carrying a file (or named avatar/banner/file/image) is the image.
    let names = ["avatar", "banner", "file", "image"];
    match crate::extract::read_file_part(multipart, &names, Upload::Image, MAX_PROFILE_IMAGE_BYTES)
        .await?
    {
        Some((_, bytes)) => Ok(bytes),
        None => Err(Error::invalid("avatar", "required", "attach the image as a file part").into()),
    }
}

/// Upload an avatar (PNG, JPEG, GIF or WebP, ≤ 5 MB, multipart field `avatar`).
#[utoipa::path(post, path = "/users/@me/avatar", tag = "users",
    request_body(content = FileUpload, content_type = "multipart/form-data", description = "The image as a file part (named `avatar`, `file` or `image`)"), responses(
    (status = 200, description = "Stored", body = AvatarResponse),
    (status = 413, description = "Over 5 MB", body = ErrorBody),
    (status = 415, description = "Not an accepted image type", body = ErrorBody),
    (status = 422, description = "Not a valid image", body = ErrorBody)))]
pub async fn post_avatar(
    State(s): State<AppState>,
    auth: Auth,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<JsonResponse<AvatarResponse>> {
    let bytes = read_image(mp).await?;
    let url = s
        .core
        .set_profile_image(auth.caller(), false, bytes)
        .await?;
    Ok(JsonResponse(AvatarResponse { avatar_url: url }))
}

/// Upload a banner (same rules as avatars, multipart field `banner`).
#[utoipa::path(post, path = "/users/@me/banner", tag = "users",
    request_body(content = FileUpload, content_type = "multipart/form-data", description = "The image as a file part (named `banner`, `file` or `image`)"), responses(
    (status = 200, description = "Stored", body = BannerResponse),
    (status = 413, description = "Over 5 MB", body = ErrorBody),
    (status = 415, description = "Not an accepted image type", body = ErrorBody),
    (status = 422, description = "Not a valid image", body = ErrorBody)))]
pub async fn post_banner(
    State(s): State<AppState>,
    auth: Auth,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<JsonResponse<BannerResponse>> {
    let bytes = read_image(mp).await?;
    let url = s.core.set_profile_image(auth.caller(), true, bytes).await?;
    Ok(JsonResponse(BannerResponse { banner_url: url }))
}

/// The caller's DM and group DM channels.
#[utoipa::path(get, path = "/users/{id}/dm-channels", tag = "users",
    params(("id" = String, Path, description = "The caller's id or `@me`")), responses(
    (status = 200, description = "Channels", body = ChannelList), (status = 403, description = "Not yourself", body = ErrorBody)))]
pub async fn list_dms(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<UserRef>,
) -> ApiResult<JsonResponse<ChannelList>> {
    Ok(JsonResponse(
        s.core
            .dm_channels(auth.caller(), id.resolve(auth.caller()))
            .await?,
    ))
}

/// Open (or get) a DM with `recipientId`, or create a group DM with `recipients`.
#[utoipa::path(post, path = "/users/{id}/dm-channels", tag = "users", request_body = CreateDmRequest,
    params(("id" = String, Path, description = "The caller's id or `@me`")), responses(
    (status = 201, description = "Created", body = Channel),
    (status = 200, description = "The existing 1:1 DM", body = Channel),
    (status = 403, description = "Blocked, or the recipient does not accept DMs from you", body = ErrorBody),
    (status = 404, description = "No such recipient", body = ErrorBody),
    (status = 422, description = "Bad recipients", body = ErrorBody)))]
pub async fn create_dm(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<UserRef>,
    Json(req): Json<CreateDmRequest>,
) -> ApiResult<Response> {
    let (channel, created) = s
        .core
        .create_dm(auth.caller(), id.resolve(auth.caller()), req)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, JsonResponse(channel)).into_response())
}
