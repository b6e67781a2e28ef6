//! From failures to HTTP responses (SPEC §3).
//!
//! The core reports domain errors ([`xcord_core::Error`]); the edge adds its own refusals
//! ([`RequestError`]: a body that is not JSON, a malformed `If-Match`, …). [`canonical`] is
//! the one table that turns either into the canonical surface's status, message and
//! details. A compatibility profile with other codes and envelopes adds its own table
//! beside it, from the same [`ApiError`], without a change to the core.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xcord_core::{
    AuthFailure, Clash, Denial, DirectChannelAction, Error, OwnerAction, Refusal, SelfAction,
    Upload, error::permission_name,
};
use xcord_types::{ErrorBody, RetryAfter};

/// A failed request: a use-case's domain error, or a request refused at the edge.
#[derive(Debug)]
pub enum ApiError {
    /// A use-case refused or failed.
    Core(Error),
    /// The request could not be used; no use-case ran.
    Request(RequestError),
}

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::Core(e.into())
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::Request(e)
    }
}

/// Requests refused by the HTTP edge (extractors), before any use-case runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// A JSON route got a body of another `Content-Type`.
    NotJson,
    /// A route whose JSON body is optional got a non-empty body of another `Content-Type`.
    NotJsonOrEmpty,
    /// An upload route got a body that is not `multipart/form-data`.
    NotMultipart(Upload),
    /// The body is over the router's size limit.
    BodyTooLarge,
    /// The body could not be read.
    UnreadableBody,
    /// The body is not JSON; the parser's description.
    MalformedJson(String),
    /// JSON of the wrong overall shape (an array for an object, say); the parser's words.
    WrongShape(String),
    /// The multipart framing is broken.
    MalformedMultipart,
    /// `If-Match` is not visible ASCII.
    IfMatchNotText,
    /// `If-Match` is not an entity version.
    IfMatchNotVersion,
    /// A path parameter that cannot name anything (a malformed id).
    UnknownResource,
}

/// What one surface's table gives a client for a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The HTTP status.
    pub status: StatusCode,
    /// The human sentence.
    pub message: String,
    /// Structured details (failed fields, retry delay).
    pub details: Option<serde_json::Value>,
}

/// The short name used in `error` for a status.
pub fn short_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        422 => "Validation Error",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        s if s >= 500 => "Internal Server Error",
        _ => "Error",
    }
}

/// A default sentence for a status, used when a layer (not a handler) produced the error.
pub fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood.",
        401 => "Authentication is required.",
        403 => "You are not allowed to do this.",
        404 => "The requested resource was not found.",
        405 => "This method is not allowed on this route.",
        408 | 504 => "The request took too long.",
        413 => "The request body is too large.",
        415 => "The request has an unsupported content type.",
        416 => "The requested range is outside the file.",
        429 => "You are being rate limited.",
        503 => "The service is temporarily unavailable.",
        _ => "An internal error occurred.",
    }
}

/// Builds an error response with the SPEC body.
pub fn error_response(
    status: StatusCode,
    message: String,
    details: Option<serde_json::Value>,
) -> Response {
    let body = ErrorBody {
        error: short_name(status).to_owned(),
        message,
        details,
    };
    (status, Json(body)).into_response()
}

/// The canonical surface's table (SPEC §3): every failure, its status, message and details.
/// Pure, so it can be tested row by row; logging and headers belong to [`IntoResponse`].
pub fn canonical(e: &ApiError) -> Rendered {
    let (status, message, details) = match e {
        ApiError::Core(e) => match e {
            Error::NotFound(entity) => (StatusCode::NOT_FOUND, format!("Unknown {entity}."), None),
            Error::MissingPermission { missing, .. } => (
                StatusCode::FORBIDDEN,
                format!("You need the {} permission.", permission_name(*missing)),
                None,
            ),
            Error::Denied(d) => (StatusCode::FORBIDDEN, denial_message(*d).into(), None),
            Error::Refused(r) => (StatusCode::BAD_REQUEST, refusal_message(*r).into(), None),
            Error::Validation(fields) => {
                let message = match fields.as_slice() {
                    [one] => format!("Invalid {}: {}", one.field, one.message),
                    _ => format!("{} fields are invalid.", fields.len()),
                };
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    message,
                    serde_json::to_value(fields).ok(),
                )
            }
            Error::StaleVersion { .. } => (
                StatusCode::CONFLICT,
                "The entity changed since that version (If-Match is stale); fetch it and retry."
                    .into(),
                None,
            ),
            Error::Conflict(c) => (StatusCode::CONFLICT, clash_message(*c).into(), None),
            Error::TooLarge {
                upload,
                limit_bytes,
            } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                too_large_message(*upload, *limit_bytes),
                None,
            ),
            Error::UnsupportedFormat { upload } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                match upload {
                    Upload::Image | Upload::ServerIcon => "Images must be PNG, JPEG, GIF or WebP.",
                    Upload::Attachment => "This type of file is not accepted.",
                }
                .into(),
                None,
            ),
            Error::Unauthenticated(a) => (StatusCode::UNAUTHORIZED, auth_message(*a).into(), None),
            Error::RateLimited {
                retry_after_secs, ..
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                format!("You are being rate limited; retry in {retry_after_secs} s."),
                serde_json::to_value(RetryAfter {
                    retry_after: *retry_after_secs,
                })
                .ok(),
            ),
            Error::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                default_message(StatusCode::SERVICE_UNAVAILABLE).into(),
                None,
            ),
            Error::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                default_message(StatusCode::INTERNAL_SERVER_ERROR).into(),
                None,
            ),
        },
        ApiError::Request(r) => {
            let (status, message) = request_row(r);
            (status, message, None)
        }
    };
    Rendered {
        status,
        message,
        details,
    }
}

fn denial_message(d: Denial) -> &'static str {
    match d {
        Denial::NotOwner(OwnerAction::TransferServer) => "Only the owner can transfer the server.",
        Denial::NotOwner(OwnerAction::DeleteServer) => "Only the owner can delete the server.",
        Denial::TargetIsOwner => "Nobody can act on the server owner.",
        Denial::TargetOutranks => "That member's highest role is at or above yours.",
        Denial::RoleOutranks => "That role is at or above your highest role.",
        Denial::GrantExceedsOwn => "You can only give a role permissions you have.",
        Denial::OverwriteExceedsOwn => "You can only allow or deny permissions you have.",
        Denial::NotAuthor => "Only the author can edit a message.",
        Denial::NotSelf(SelfAction::EditProfile) => "You can only change your own profile.",
        Denial::NotSelf(SelfAction::ListDmChannels) => "You can only list your own DM channels.",
        Denial::NotSelf(SelfAction::OpenDmChannel) => "You can only open DM channels for yourself.",
        Denial::NotSelf(SelfAction::UseVoice) => "You can only act on your own voice session.",
        Denial::Banned => "You are banned from this server.",
        Denial::Blocked => "You cannot message this user.",
        Denial::FriendRequestBlocked => "You cannot send a friend request to this user.",
        Denial::DmsFriendsOnly => "This user accepts direct messages from friends only.",
        Denial::DmsClosed => "This user does not accept direct messages.",
        Denial::NoSharedContext => "You share no server, DM or friendship with this user.",
        Denial::DirectChannel(DirectChannelAction::Edit) => {
            "A direct message channel has nothing to edit."
        }
        Denial::DirectChannel(DirectChannelAction::Delete) => {
            "Direct message channels cannot be deleted."
        }
        Denial::DirectChannel(DirectChannelAction::BulkDelete) => {
            "Bulk delete works in server channels."
        }
        Denial::EmailUnverified => "Verify your e-mail address before logging in.",
        Denial::WrongPassword => "The current password is wrong.",
        Denial::InvalidSignedLink => "This link is invalid or has expired.",
    }
}

fn refusal_message(r: Refusal) -> &'static str {
    match r {
        Refusal::WrongTwoFactorCode => "Invalid two-factor code.",
        Refusal::InvalidVerificationToken => "The verification token is invalid or has expired.",
        Refusal::InvalidResetToken => "The reset token is invalid or has expired.",
        Refusal::NoEmailAddress => "This account has no e-mail address.",
        Refusal::TwoFactorNotStarted => "Call enable-2fa first.",
        Refusal::TwoFactorNotEnabled => "Two-factor authentication is not enabled.",
        Refusal::EveryoneRoleUndeletable => "The @everyone role cannot be deleted.",
        Refusal::OwnerCannotLeave => {
            "The owner cannot leave; transfer the server (PATCH ownerId) or delete it."
        }
        Refusal::KickSelf => "Use DELETE /servers/{id}/members/@me to leave.",
        Refusal::BanSelf => "You cannot ban yourself.",
        Refusal::InvalidSdp => "The SDP cannot be parsed or used.",
        Refusal::NotInVoice => "The member is not connected to voice.",
    }
}

fn clash_message(c: Clash) -> &'static str {
    match c {
        Clash::UsernameTaken => "This username is taken.",
        Clash::EmailTaken => "An account with this e-mail address already exists.",
        Clash::EmailAlreadyVerified => "Your e-mail address is already verified.",
        Clash::TwoFactorAlreadyEnabled => "Two-factor authentication is already enabled.",
        Clash::VanityUrlTaken => "This vanity URL is taken.",
        Clash::AlreadyExists => "the resource already exists",
        Clash::VoiceChannelFull => "The voice channel is full.",
        Clash::VoiceOfferPending => "Answer the server's offer (VOICE_SDP) first.",
        Clash::NoVoiceOfferPending => "No server offer waits for an answer.",
        Clash::ScheduledNotWaiting => {
            "The scheduled message is no longer waiting (sent, failed, cancelled or being sent)."
        }
    }
}

fn auth_message(a: AuthFailure) -> &'static str {
    match a {
        AuthFailure::TokenMissing => "Missing `Authorization: Bearer <token>`.",
        AuthFailure::Anonymous => "Authentication is required.",
        AuthFailure::InvalidToken => "Invalid token.",
        AuthFailure::TokenExpired => "The token has expired.",
        AuthFailure::TokenRevoked => "The token has been revoked.",
        AuthFailure::WrongCredentials => "Invalid login or password.",
        AuthFailure::InvalidLoginTicket => "The login ticket is invalid or has expired.",
        AuthFailure::WrongTwoFactorCode => "Invalid two-factor code.",
        AuthFailure::RefreshTokenReused => {
            "This refresh token was already used; the session has been revoked."
        }
        AuthFailure::InvalidRefreshToken => "The refresh token is invalid or has expired.",
    }
}

fn too_large_message(upload: Upload, limit_bytes: usize) -> String {
    const MB: usize = 1024 * 1024;
    match upload {
        Upload::Image => format!("The image is larger than {} MB.", limit_bytes / MB),
        Upload::ServerIcon => format!("The icon is larger than {} MB.", limit_bytes / MB),
        Upload::Attachment => format!("Attachments are limited to {limit_bytes} bytes."),
    }
}

/// The noun an upload is called by in messages.
fn upload_noun(upload: Upload) -> &'static str {
    match upload {
        Upload::Image => "image",
        Upload::ServerIcon => "icon",
        Upload::Attachment => "file",
    }
}

fn request_row(r: &RequestError) -> (StatusCode, String) {
    match r {
        RequestError::NotJson => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected a JSON body with `Content-Type: application/json`.".into(),
        ),
        RequestError::NotJsonOrEmpty => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected no body, or a JSON body with `Content-Type: application/json`.".into(),
        ),
        RequestError::NotMultipart(upload) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Upload the {} as multipart/form-data.",
                upload_noun(*upload)
            ),
        ),
        RequestError::BodyTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is too large.".into(),
        ),
        RequestError::UnreadableBody => (
            StatusCode::BAD_REQUEST,
            "The request body could not be read.".into(),
        ),
        RequestError::MalformedJson(why) => (
            StatusCode::BAD_REQUEST,
            format!("Malformed JSON body: {why}."),
        ),
        RequestError::WrongShape(why) => (
            StatusCode::BAD_REQUEST,
            format!("The JSON body has the wrong shape: {why}."),
        ),
        RequestError::MalformedMultipart => (
            StatusCode::BAD_REQUEST,
            "The multipart body is malformed.".into(),
        ),
        RequestError::IfMatchNotText => (
            StatusCode::BAD_REQUEST,
            "If-Match must be a version number.".into(),
        ),
        RequestError::IfMatchNotVersion => (
            StatusCode::BAD_REQUEST,
            "If-Match must carry the entity's version number.".into(),
        ),
        RequestError::UnknownResource => (StatusCode::NOT_FOUND, "Unknown resource.".into()),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The whole chain goes to the log inside the request span; the client only learns
        // that something failed.
        match &self {
            ApiError::Core(Error::Unavailable(e)) => {
                tracing::warn!(error = format!("{e:#}"), "dependency unavailable");
            }
            ApiError::Core(Error::Internal(e)) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
            }
            _ => {}
        }
        let Rendered {
            status,
            message,
            details,
        } = canonical(&self);
        let mut res = error_response(status, message, details);
        if let ApiError::Core(Error::RateLimited {
            retry_after_secs,
            limit,
        }) = self
        {
            let h = res.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            h.insert("x-ratelimit-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
            h.insert("x-ratelimit-reset", HeaderValue::from(retry_after_secs));
        }
        res
    }
}

/// Answer for routes that do not exist.
pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        default_message(StatusCode::NOT_FOUND).into(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcord_core::error::bits;
    use xcord_core::{Entity, Scope};
    use xcord_types::{FieldError, Snowflake};

    fn core(e: Error) -> ApiError {
        ApiError::Core(e)
    }

    /// Every row of the canonical table, with the status and sentence clients see.
    fn rows() -> Vec<(ApiError, u16, &'static str)> {
        let id = Snowflake::from_i64(42);
        vec![
            (
                core(Error::NotFound(Entity::Channel)),
                404,
                "Unknown channel.",
            ),
            (
                core(Error::NotFound(Entity::Member)),
                404,
                "Unknown member.",
            ),
            (
                core(Error::MissingPermission {
                    missing: bits::MANAGE_CHANNELS,
                    scope: Scope::Channel(id),
                }),
                403,
                "You need the MANAGE_CHANNELS permission.",
            ),
            (
                core(Error::MissingPermission {
                    missing: bits::SEND_MESSAGES | bits::ATTACH_FILES,
                    scope: Scope::Server(id),
                }),
                403,
                "You need the SEND_MESSAGES permission.",
            ),
            (
                core(Error::Denied(Denial::NotOwner(OwnerAction::DeleteServer))),
                403,
                "Only the owner can delete the server.",
            ),
            (
                core(Error::Denied(Denial::NotOwner(OwnerAction::TransferServer))),
                403,
                "Only the owner can transfer the server.",
            ),
            (
                core(Error::Denied(Denial::TargetIsOwner)),
                403,
                "Nobody can act on the server owner.",
            ),
            (
                core(Error::Denied(Denial::TargetOutranks)),
                403,
                "That member's highest role is at or above yours.",
            ),
            (
                core(Error::Denied(Denial::RoleOutranks)),
                403,
                "That role is at or above your highest role.",
            ),
            (
                core(Error::Denied(Denial::GrantExceedsOwn)),
                403,
                "You can only give a role permissions you have.",
            ),
            (
                core(Error::Denied(Denial::OverwriteExceedsOwn)),
                403,
                "You can only allow or deny permissions you have.",
            ),
            (
                core(Error::Denied(Denial::NotAuthor)),
                403,
                "Only the author can edit a message.",
            ),
            (
                core(Error::Denied(Denial::NotSelf(SelfAction::EditProfile))),
                403,
                "You can only change your own profile.",
            ),
            (
                core(Error::Denied(Denial::NotSelf(SelfAction::ListDmChannels))),
                403,
                "You can only list your own DM channels.",
            ),
            (
                core(Error::Denied(Denial::NotSelf(SelfAction::OpenDmChannel))),
                403,
                "You can only open DM channels for yourself.",
            ),
            (
                core(Error::Denied(Denial::Banned)),
                403,
                "You are banned from this server.",
            ),
            (
                core(Error::Denied(Denial::Blocked)),
                403,
                "You cannot message this user.",
            ),
            (
                core(Error::Denied(Denial::FriendRequestBlocked)),
                403,
                "You cannot send a friend request to this user.",
            ),
            (
                core(Error::Denied(Denial::DmsFriendsOnly)),
                403,
                "This user accepts direct messages from friends only.",
            ),
            (
                core(Error::Denied(Denial::DmsClosed)),
                403,
                "This user does not accept direct messages.",
            ),
            (
                core(Error::Denied(Denial::NoSharedContext)),
                403,
                "You share no server, DM or friendship with this user.",
            ),
            (
                core(Error::Denied(Denial::DirectChannel(
                    DirectChannelAction::Edit,
                ))),
                403,
                "A direct message channel has nothing to edit.",
            ),
            (
                core(Error::Denied(Denial::DirectChannel(
                    DirectChannelAction::Delete,
                ))),
                403,
                "Direct message channels cannot be deleted.",
            ),
            (
                core(Error::Denied(Denial::DirectChannel(
                    DirectChannelAction::BulkDelete,
                ))),
                403,
                "Bulk delete works in server channels.",
            ),
            (
                core(Error::Conflict(Clash::VoiceChannelFull)),
                409,
                "The voice channel is full.",
            ),
            (
                core(Error::Denied(Denial::EmailUnverified)),
                403,
                "Verify your e-mail address before logging in.",
            ),
            (
                core(Error::Denied(Denial::WrongPassword)),
                403,
                "The current password is wrong.",
            ),
            (
                core(Error::Denied(Denial::InvalidSignedLink)),
                403,
                "This link is invalid or has expired.",
            ),
            (
                core(Error::Refused(Refusal::WrongTwoFactorCode)),
                400,
                "Invalid two-factor code.",
            ),
            (
                core(Error::Refused(Refusal::InvalidVerificationToken)),
                400,
                "The verification token is invalid or has expired.",
            ),
            (
                core(Error::Refused(Refusal::InvalidResetToken)),
                400,
                "The reset token is invalid or has expired.",
            ),
            (
                core(Error::Refused(Refusal::NoEmailAddress)),
                400,
                "This account has no e-mail address.",
            ),
            (
                core(Error::Refused(Refusal::TwoFactorNotStarted)),
                400,
                "Call enable-2fa first.",
            ),
            (
                core(Error::Refused(Refusal::TwoFactorNotEnabled)),
                400,
                "Two-factor authentication is not enabled.",
            ),
            (
                core(Error::Refused(Refusal::EveryoneRoleUndeletable)),
                400,
                "The @everyone role cannot be deleted.",
            ),
            (
                core(Error::Refused(Refusal::OwnerCannotLeave)),
                400,
                "The owner cannot leave; transfer the server (PATCH ownerId) or delete it.",
            ),
            (
                core(Error::Refused(Refusal::KickSelf)),
                400,
                "Use DELETE /servers/{id}/members/@me to leave.",
            ),
            (
                core(Error::Refused(Refusal::BanSelf)),
                400,
                "You cannot ban yourself.",
            ),
            (
                core(Error::Refused(Refusal::InvalidSdp)),
                400,
                "The SDP cannot be parsed or used.",
            ),
            (
                core(Error::Refused(Refusal::NotInVoice)),
                400,
                "The member is not connected to voice.",
            ),
            (
                core(Error::Conflict(Clash::VoiceOfferPending)),
                409,
                "Answer the server's offer (VOICE_SDP) first.",
            ),
            (
                core(Error::Conflict(Clash::NoVoiceOfferPending)),
                409,
                "No server offer waits for an answer.",
            ),
            (
                core(Error::NotFound(Entity::VoiceSession)),
                404,
                "Unknown voice session.",
            ),
            (
                core(Error::StaleVersion {
                    entity: Entity::Channel,
                    given: Some(3),
                }),
                409,
                "The entity changed since that version (If-Match is stale); fetch it and retry.",
            ),
            (
                core(Error::Conflict(Clash::UsernameTaken)),
                409,
                "This username is taken.",
            ),
            (
                core(Error::Conflict(Clash::EmailTaken)),
                409,
                "An account with this e-mail address already exists.",
            ),
            (
                core(Error::Conflict(Clash::EmailAlreadyVerified)),
                409,
                "Your e-mail address is already verified.",
            ),
            (
                core(Error::Conflict(Clash::TwoFactorAlreadyEnabled)),
                409,
                "Two-factor authentication is already enabled.",
            ),
            (
                core(Error::Conflict(Clash::VanityUrlTaken)),
                409,
                "This vanity URL is taken.",
            ),
            (
                core(Error::Conflict(Clash::AlreadyExists)),
                409,
                "the resource already exists",
            ),
            (
                core(Error::TooLarge {
                    upload: Upload::Image,
                    limit_bytes: 5 * 1024 * 1024,
                }),
                413,
                "The image is larger than 5 MB.",
            ),
            (
                core(Error::TooLarge {
                    upload: Upload::ServerIcon,
                    limit_bytes: 5 * 1024 * 1024,
                }),
                413,
                "The icon is larger than 5 MB.",
            ),
            (
                core(Error::TooLarge {
                    upload: Upload::Attachment,
                    limit_bytes: 1000,
                }),
                413,
                "Attachments are limited to 1000 bytes.",
            ),
            (
                core(Error::UnsupportedFormat {
                    upload: Upload::Image,
                }),
                415,
                "Images must be PNG, JPEG, GIF or WebP.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::TokenMissing)),
                401,
                "Missing `Authorization: Bearer <token>`.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::Anonymous)),
                401,
                "Authentication is required.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::InvalidToken)),
                401,
                "Invalid token.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::TokenExpired)),
                401,
                "The token has expired.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::TokenRevoked)),
                401,
                "The token has been revoked.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::WrongCredentials)),
                401,
                "Invalid login or password.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::InvalidLoginTicket)),
                401,
                "The login ticket is invalid or has expired.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::WrongTwoFactorCode)),
                401,
                "Invalid two-factor code.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::RefreshTokenReused)),
                401,
                "This refresh token was already used; the session has been revoked.",
            ),
            (
                core(Error::Unauthenticated(AuthFailure::InvalidRefreshToken)),
                401,
                "The refresh token is invalid or has expired.",
            ),
            (
                core(Error::RateLimited {
                    retry_after_secs: 7,
                    limit: 5,
                }),
                429,
                "You are being rate limited; retry in 7 s.",
            ),
            (
                core(Error::Unavailable(anyhow::anyhow!("db down at 10.0.0.1"))),
                503,
                "The service is temporarily unavailable.",
            ),
            (
                core(Error::Internal(anyhow::anyhow!("secret detail"))),
                500,
                "An internal error occurred.",
            ),
            (
                RequestError::NotJson.into(),
                415,
                "Expected a JSON body with `Content-Type: application/json`.",
            ),
            (
                RequestError::NotJsonOrEmpty.into(),
                415,
                "Expected no body, or a JSON body with `Content-Type: application/json`.",
            ),
            (
                RequestError::NotMultipart(Upload::Image).into(),
                415,
                "Upload the image as multipart/form-data.",
            ),
            (
                RequestError::NotMultipart(Upload::Attachment).into(),
                415,
                "Upload the file as multipart/form-data.",
            ),
            (
                RequestError::BodyTooLarge.into(),
                413,
                "The request body is too large.",
            ),
            (
                RequestError::UnreadableBody.into(),
                400,
                "The request body could not be read.",
            ),
            (
                RequestError::MalformedJson("EOF while parsing".into()).into(),
                400,
                "Malformed JSON body: EOF while parsing.",
            ),
            (
                RequestError::WrongShape("invalid type: sequence".into()).into(),
                400,
                "The JSON body has the wrong shape: invalid type: sequence.",
            ),
            (
                RequestError::MalformedMultipart.into(),
                400,
                "The multipart body is malformed.",
            ),
            (
                RequestError::IfMatchNotText.into(),
                400,
                "If-Match must be a version number.",
            ),
            (
                RequestError::IfMatchNotVersion.into(),
                400,
                "If-Match must carry the entity's version number.",
            ),
            (
                RequestError::UnknownResource.into(),
                404,
                "Unknown resource.",
            ),
        ]
    }

    #[test]
    fn canonical_table_gives_each_error_its_status_and_sentence() {
        for (e, status, message) in rows() {
            let r = canonical(&e);
            assert_eq!(r.status.as_u16(), status, "{e:?}");
            assert_eq!(r.message, message, "{e:?}");
        }
    }

    async fn body_of(res: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }

    #[tokio::test]
    async fn responses_carry_the_spec_envelope_details_and_headers() {
        let res = core(Error::Validation(vec![
            FieldError::new("name", "length", "must be 2–100 characters"),
            FieldError::new("type", "oneOf", "must be text, voice or category"),
        ]))
        .into_response();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_of(res).await;
        assert_eq!(body["error"], "Validation Error");
        assert_eq!(body["message"], "2 fields are invalid.");
        assert_eq!(body["details"][0]["field"], "name");
        assert_eq!(body["details"][1]["rule"], "oneOf");

        let res = core(Error::RateLimited {
            retry_after_secs: 7,
            limit: 5,
        })
        .into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        assert_eq!(res.headers()["x-ratelimit-limit"], "5");
        assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
        let body = body_of(res).await;
        assert_eq!(body["error"], "Too Many Requests");
        assert_eq!(body["details"]["retryAfter"], 7);

        // Internals never reach the client.
        let res = core(Error::Internal(anyhow::anyhow!("secret detail"))).into_response();
        let body = body_of(res).await;
        assert_eq!(body["error"], "Internal Server Error");
        assert!(!body.to_string().contains("secret"), "{body}");

        let body = body_of(core(Error::NotFound(Entity::Invite)).into_response()).await;
        assert_eq!(body["error"], "Not Found");
        assert_eq!(body["message"], "Unknown invite.");
        assert!(body.get("details").is_none_or(|d| d.is_null()), "{body}");
    }
}
