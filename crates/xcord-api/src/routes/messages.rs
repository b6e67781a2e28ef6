//! `/channels/{id}/messages/*`, reactions, pins, typing, attachments, search, read states.

use axum::Json as JsonResponse;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xcord_core::messages::SearchScope;
use xcord_core::ratelimit::Tier;
use xcord_core::{Error, Upload};
use xcord_types::rest::messages::{
    Attachment, BulkDeleteRequest, CreateMessageRequest, EditMessageRequest, FileUpload,
    HistoryQuery, Message, MessageList, ReactionUsersQuery, ReadStateList, SearchParams,
};
use xcord_types::rest::users::UserList;
use xcord_types::{ErrorBody, Snowflake};

use crate::AppState;
use crate::auth::{Auth, IfMatch, RateHeaders};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

type ApiResult<T> = Result<T, ApiError>;

/// History, newest first; at most one of `before`, `after`, `around`.
#[utoipa::path(get, path = "/channels/{id}/messages", tag = "messages", params(("id" = Snowflake, Path), HistoryQuery),
    responses((status = 200, description = "Messages", body = MessageList), (status = 403, description = "No READ_MESSAGE_HISTORY", body = ErrorBody),
        (status = 404, description = "No such channel, or hidden", body = ErrorBody)))]
pub async fn history(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<JsonResponse<MessageList>> {
    Ok(JsonResponse(s.core.history(auth.caller(), id, q).await?))
}

/// Post a message (SEND_MESSAGES; slowmode; `nonce` makes retries safe).
#[utoipa::path(post, path = "/channels/{id}/messages", tag = "messages", params(("id" = Snowflake, Path)),
    request_body = CreateMessageRequest, responses(
    (status = 201, description = "Posted", body = Message), (status = 200, description = "The earlier message with this nonce", body = Message),
    (status = 403, description = "Not permitted", body = ErrorBody), (status = 422, description = "Invalid fields", body = ErrorBody),
    (status = 429, description = "Rate limited or slowmode", body = ErrorBody)))]
pub async fn post(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Json(req): Json<CreateMessageRequest>,
) -> ApiResult<Response> {
    let decision = s
        .core
        .rate_limit(Tier::MessageSend, &auth.caller().user_id.to_string())
        .await?;
    let (msg, created) = s.core.post_message(auth.caller(), id, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, RateHeaders(decision), JsonResponse(msg)).into_response())
}

/// One message.
#[utoipa::path(get, path = "/channels/{id}/messages/{messageId}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path)), responses(
    (status = 200, description = "Message", body = Message), (status = 404, description = "Unknown or deleted", body = ErrorBody),
    (status = 403, description = "No READ_MESSAGE_HISTORY")))]
pub async fn get_message(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<JsonResponse<Message>> {
    Ok(JsonResponse(
        s.core.get_message(auth.caller(), id, mid).await?,
    ))
}

/// Edit one's own message.
#[utoipa::path(patch, path = "/channels/{id}/messages/{messageId}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path),
        ("If-Match" = Option<u64>, Header, description = "The `version` the edit is based on; a stale one is refused with 409")),
    request_body = EditMessageRequest, responses(
    (status = 200, description = "Edited", body = Message), (status = 403, description = "Not the author", body = ErrorBody),
    (status = 409, description = "Stale If-Match", body = ErrorBody),
    (status = 429, description = "Rate limited (message edits)")))]
pub async fn edit(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid)): Path<(Snowflake, Snowflake)>,
    IfMatch(version): IfMatch,
    Json(req): Json<EditMessageRequest>,
) -> ApiResult<Response> {
    let decision = s
        .core
        .rate_limit(Tier::MessageEdit, &auth.caller().user_id.to_string())
        .await?;
    let msg = s
        .core
        .edit_message(auth.caller(), id, mid, req, version)
        .await?;
    Ok((RateHeaders(decision), JsonResponse(msg)).into_response())
}

/// Delete a message (the author, or MANAGE_MESSAGES).
#[utoipa::path(delete, path = "/channels/{id}/messages/{messageId}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path)), responses(
    (status = 204, description = "Deleted"), (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.delete_message(auth.caller(), id, mid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete 2–100 messages (MANAGE_MESSAGES).
#[utoipa::path(post, path = "/channels/{id}/messages/bulk-delete", tag = "messages", params(("id" = Snowflake, Path)),
    request_body = BulkDeleteRequest, responses((status = 204, description = "Deleted"), (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn bulk_delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Json(req): Json<BulkDeleteRequest>,
) -> ApiResult<StatusCode> {
    s.core.bulk_delete(auth.caller(), id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// React (a new emoji needs ADD_REACTIONS). `POST` does the same.
#[utoipa::path(put, path = "/channels/{id}/messages/{messageId}/reactions/{emoji}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path), ("emoji" = String, Path, description = "URL-encoded emoji or name:id")),
    responses((status = 204, description = "Reacted"), (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 422, description = "The emoji is neither an emoji nor `name:id` of at most 64 characters")))]
pub async fn put_reaction(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid, emoji)): Path<(Snowflake, Snowflake, String)>,
) -> ApiResult<StatusCode> {
    s.core.add_reaction(auth.caller(), id, mid, &emoji).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// React (as seed 000 writes it).
#[utoipa::path(post, path = "/channels/{id}/messages/{messageId}/reactions/{emoji}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path), ("emoji" = String, Path)),
    responses((status = 204, description = "Reacted"),
    (status = 403, description = "Not permitted, or blocked in a DM"),
    (status = 422, description = "The emoji is neither an emoji nor `name:id` of at most 64 characters")))]
pub async fn post_reaction(
    s: State<AppState>,
    auth: Auth,
    p: Path<(Snowflake, Snowflake, String)>,
) -> ApiResult<StatusCode> {
    put_reaction(s, auth, p).await
}

/// Remove one's own reaction.
#[utoipa::path(delete, path = "/channels/{id}/messages/{messageId}/reactions/{emoji}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path), ("emoji" = String, Path)), responses((status = 204, description = "Removed"),
    (status = 403, description = "No READ_MESSAGE_HISTORY"),
    (status = 422, description = "The emoji is neither an emoji nor `name:id` of at most 64 characters")))]
pub async fn delete_reaction(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid, emoji)): Path<(Snowflake, Snowflake, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .remove_reaction(auth.caller(), id, mid, &emoji)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who reacted with an emoji.
#[utoipa::path(get, path = "/channels/{id}/messages/{messageId}/reactions/{emoji}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path), ("emoji" = String, Path), ReactionUsersQuery),
    responses((status = 200, description = "Users", body = UserList),
    (status = 403, description = "No READ_MESSAGE_HISTORY"),
    (status = 422, description = "The emoji is neither an emoji nor `name:id` of at most 64 characters")))]
pub async fn reaction_users(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid, emoji)): Path<(Snowflake, Snowflake, String)>,
    Query(q): Query<ReactionUsersQuery>,
) -> ApiResult<JsonResponse<UserList>> {
    Ok(JsonResponse(
        s.core
            .reaction_users(auth.caller(), id, mid, &emoji, q.after, q.limit)
            .await?,
    ))
}

/// Pinned messages, newest pin first.
#[utoipa::path(get, path = "/channels/{id}/pins", tag = "messages", params(("id" = Snowflake, Path)),
    responses((status = 200, description = "Pinned messages", body = MessageList),
    (status = 403, description = "No READ_MESSAGE_HISTORY")))]
pub async fn pins(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<MessageList>> {
    Ok(JsonResponse(s.core.pins(auth.caller(), id).await?))
}

/// Pin (MANAGE_MESSAGES; any member in DMs).
#[utoipa::path(put, path = "/channels/{id}/pins/{messageId}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path)), responses((status = 204, description = "Pinned"),
    (status = 403, description = "Not permitted", body = ErrorBody)))]
pub async fn pin(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.set_pin(auth.caller(), id, mid, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unpin.
#[utoipa::path(delete, path = "/channels/{id}/pins/{messageId}", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path)), responses((status = 204, description = "Unpinned"),
    (status = 403, description = "Not permitted")))]
pub async fn unpin(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.set_pin(auth.caller(), id, mid, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Show that the caller is typing (TYPING_START for 10 s).
#[utoipa::path(post, path = "/channels/{id}/typing", tag = "messages", params(("id" = Snowflake, Path)),
    responses((status = 204, description = "Announced"),
    (status = 403, description = "No SEND_MESSAGES")))]
pub async fn typing(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    s.core.typing(auth.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Upload a file for a later message (multipart field `file`; ATTACH_FILES).
#[utoipa::path(post, path = "/channels/{id}/attachments", tag = "messages", params(("id" = Snowflake, Path)),
    request_body(content = FileUpload, content_type = "multipart/form-data", description = "The file as a part named `file`"), responses(
    (status = 201, description = "Stored", body = Attachment), (status = 413, description = "Too large", body = ErrorBody),
    (status = 403, description = "No SEND_MESSAGES or ATTACH_FILES")))]
pub async fn upload(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let limit = s.core.settings.attachment_max_bytes;
    let Some((name, bytes)) =
        crate::extract::read_file_part(mp, &["file"], Upload::Attachment, limit).await?
    else {
        return Err(
            Error::invalid("file", "required", "attach the file as a part named `file`").into(),
        );
    };
    let out = s
        .core
        .upload_attachment(auth.caller(), id, &name, bytes)
        .await?;
    Ok((StatusCode::CREATED, JsonResponse(out)).into_response())
}

/// Mark a channel read up to a message (MESSAGE_ACK; read receipts in DMs).
#[utoipa::path(post, path = "/channels/{id}/messages/{messageId}/ack", tag = "messages",
    params(("id" = Snowflake, Path), ("messageId" = Snowflake, Path)), responses((status = 204, description = "Recorded"),
    (status = 403, description = "No READ_MESSAGE_HISTORY")))]
pub async fn ack(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, mid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.ack(auth.caller(), id, mid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's read states with unread and mention counts.
#[utoipa::path(get, path = "/users/@me/read-states", tag = "messages",
    responses((status = 200, description = "Read states", body = ReadStateList)))]
pub async fn read_states(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<ReadStateList>> {
    Ok(JsonResponse(s.core.read_states(auth.caller()).await?))
}

/// Search one channel.
#[utoipa::path(get, path = "/channels/{id}/messages/search", tag = "messages", params(("id" = Snowflake, Path), SearchParams),
    responses((status = 200, description = "Matches, newest first", body = MessageList),
    (status = 403, description = "No READ_MESSAGE_HISTORY")))]
pub async fn search_channel(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Query(p): Query<SearchParams>,
) -> ApiResult<JsonResponse<MessageList>> {
    Ok(JsonResponse(
        s.core
            .search(auth.caller(), SearchScope::Channel(id), p)
            .await?,
    ))
}

/// Search every channel of a server the caller can read.
#[utoipa::path(get, path = "/servers/{id}/messages/search", tag = "messages", params(("id" = Snowflake, Path), SearchParams),
    responses((status = 200, description = "Matches, newest first", body = MessageList)))]
pub async fn search_server(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Query(p): Query<SearchParams>,
) -> ApiResult<JsonResponse<MessageList>> {
    Ok(JsonResponse(
        s.core
            .search(auth.caller(), SearchScope::Server(id), p)
            .await?,
    ))
}
