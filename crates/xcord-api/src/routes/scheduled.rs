//! `/channels/{id}/scheduled-messages` and `/users/@me/scheduled-messages` (SPEC §6).

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xcord_core::ratelimit::Tier;
use xcord_types::rest::scheduled::{
    CreateScheduledRequest, EditScheduledRequest, ScheduledMessage, ScheduledMessageList,
    ScheduledQuery,
};
use xcord_types::{ErrorBody, Snowflake};

use crate::AppState;
use crate::auth::{Auth, RateHeaders};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

type ApiResult<T> = Result<T, ApiError>;

/// Schedule a message (SEND_MESSAGES now and again at send time; at most 120 days ahead,
/// at most 100 waiting per user).
#[utoipa::path(post, path = "/channels/{id}/scheduled-messages", tag = "scheduled messages",
    params(("id" = Snowflake, Path)), request_body = CreateScheduledRequest, responses(
    (status = 201, description = "Scheduled", body = ScheduledMessage),
    (status = 403, description = "Not permitted", body = ErrorBody),
    (status = 404, description = "No such channel, or hidden", body = ErrorBody),
    (status = 422, description = "Invalid fields, past or too far ahead, or over the limit", body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    Json(req): Json<CreateScheduledRequest>,
) -> ApiResult<Response> {
    let decision = s
        .core
        .rate_limit(Tier::MessageSend, &auth.caller().user_id.to_string())
        .await?;
    let out = s.core.schedule_message(auth.caller(), id, req).await?;
    Ok((
        StatusCode::CREATED,
        RateHeaders(decision),
        JsonResponse(out),
    )
        .into_response())
}

/// The caller's waiting scheduled messages in a channel, soonest first.
#[utoipa::path(get, path = "/channels/{id}/scheduled-messages", tag = "scheduled messages",
    params(("id" = Snowflake, Path)), responses(
    (status = 200, description = "Waiting scheduled messages", body = ScheduledMessageList),
    (status = 404, description = "No such channel, or hidden", body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<ScheduledMessageList>> {
    Ok(JsonResponse(
        s.core.channel_scheduled(auth.caller(), id).await?,
    ))
}

/// One of the caller's scheduled messages.
#[utoipa::path(get, path = "/channels/{id}/scheduled-messages/{scheduledId}", tag = "scheduled messages",
    params(("id" = Snowflake, Path), ("scheduledId" = Snowflake, Path)), responses(
    (status = 200, description = "Scheduled message", body = ScheduledMessage),
    (status = 404, description = "Not the caller's, or no such", body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, sid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<JsonResponse<ScheduledMessage>> {
    Ok(JsonResponse(
        s.core.get_scheduled(auth.caller(), id, sid).await?,
    ))
}

/// Edit the text or time while it waits.
#[utoipa::path(patch, path = "/channels/{id}/scheduled-messages/{scheduledId}", tag = "scheduled messages",
    params(("id" = Snowflake, Path), ("scheduledId" = Snowflake, Path)), request_body = EditScheduledRequest, responses(
    (status = 200, description = "Edited", body = ScheduledMessage),
    (status = 404, description = "Not the caller's, or no such", body = ErrorBody),
    (status = 409, description = "Already sent, failed or cancelled", body = ErrorBody),
    (status = 422, description = "Invalid fields", body = ErrorBody)))]
pub async fn edit(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, sid)): Path<(Snowflake, Snowflake)>,
    Json(req): Json<EditScheduledRequest>,
) -> ApiResult<JsonResponse<ScheduledMessage>> {
    Ok(JsonResponse(
        s.core.edit_scheduled(auth.caller(), id, sid, req).await?,
    ))
}

/// Cancel it while it waits.
#[utoipa::path(delete, path = "/channels/{id}/scheduled-messages/{scheduledId}", tag = "scheduled messages",
    params(("id" = Snowflake, Path), ("scheduledId" = Snowflake, Path)), responses(
    (status = 204, description = "Cancelled"),
    (status = 404, description = "Not the caller's, or no such", body = ErrorBody),
    (status = 409, description = "Already sent, failed or cancelled", body = ErrorBody)))]
pub async fn cancel(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, sid)): Path<(Snowflake, Snowflake)>,
) -> ApiResult<StatusCode> {
    s.core.cancel_scheduled(auth.caller(), id, sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's scheduled messages in every channel, newest first.
#[utoipa::path(get, path = "/users/@me/scheduled-messages", tag = "scheduled messages",
    params(ScheduledQuery), responses(
    (status = 200, description = "Scheduled messages", body = ScheduledMessageList),
    (status = 422, description = "An unknown status", body = ErrorBody)))]
pub async fn mine(
    State(s): State<AppState>,
    auth: Auth,
    Query(q): Query<ScheduledQuery>,
) -> ApiResult<JsonResponse<ScheduledMessageList>> {
    Ok(JsonResponse(
        s.core
            .my_scheduled(auth.caller(), q.status.as_deref())
            .await?,
    ))
}
