//! `/channels/{id}/voice/*`: joining voice with SDP (JSON, or WHIP with `application/sdp`),
//! answers to server offers, client offers, flags, leaving, and who is in the channel.
//!
//! In scale mode the routes that act on a channel's room are served by the node holding
//! it: arriving elsewhere, they are forwarded there (`crate::voice_forward`). Who is in a
//! channel is answered from this node's mirror of every node's voice states.

use axum::Json as JsonResponse;
use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use xcord_types::gateway::VoiceState;
use xcord_types::rest::voice::{
    JoinVoiceRequest, SdpBody, UpdateVoiceRequest, VoiceJoined, VoiceStateList,
};
use xcord_types::{ErrorBody, Snowflake};

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, RequestError};
use crate::extract::{Path, is_json_content_type, parse_json, read_body};
use crate::voice_forward::is_forwarded;
use xcord_core::voice::VoiceRoute;

type ApiResult<T> = Result<T, ApiError>;

/// The request as it arrived, kept to forward it whole (an extractor: it takes the body,
/// so it comes last among a handler's arguments).
pub struct Arrived {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Arrived {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let method = req.method().clone();
        // The path as the client sent it, also under a nested router.
        let uri = req
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| req.uri().clone(), |o| o.0.clone());
        let headers = req.headers().clone();
        let body = read_body(req, state).await?;
        Ok(Arrived {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl Arrived {
    /// Forwards the request to the node holding `channel`'s room when that is another
    /// node, and returns its answer; `None`: this node serves it.
    pub(crate) async fn elsewhere(
        &self,
        s: &AppState,
        channel: Snowflake,
        join: bool,
    ) -> ApiResult<Option<Response>> {
        let forwarded = is_forwarded(&self.headers);
        let VoiceRoute::Forward(owner) = s.core.voice_route(channel, join, forwarded).await? else {
            return Ok(None);
        };
        let target = self
            .uri
            .path_and_query()
            .map_or_else(|| self.uri.path(), |p| p.as_str());
        s.voice_forwarder
            .forward(
                &owner,
                s.core.settings.node_id,
                self.method.clone(),
                target,
                &self.headers,
                self.body.clone(),
            )
            .await
            .map(Some)
    }

    /// The body as JSON (415 unless it says it is JSON).
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> ApiResult<T> {
        if !is_json_content_type(&self.headers) {
            return Err(RequestError::NotJson.into());
        }
        parse_json(&self.body)
    }

    /// The body as JSON, or `null` when there is none.
    pub(crate) fn json_or_empty(&self) -> ApiResult<serde_json::Value> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        self.json()
    }
}

const SDP: &str = "application/sdp";

fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(SDP))
}

/// Join a voice channel with an SDP offer. JSON `{sdp, selfMute?, selfDeaf?}` answers JSON;
/// a WHIP body (`application/sdp`) answers the SDP itself with a `Location`.
#[utoipa::path(post, path = "/channels/{id}/voice", tag = "voice", params(("id" = Snowflake, Path)),
    request_body(content = JoinVoiceRequest, description = "JSON, or the offer itself as `application/sdp` (WHIP)"),
    responses((status = 201, description = "Joined; the answer carries every server candidate", body = VoiceJoined),
        (status = 400, description = "The SDP cannot be parsed", body = ErrorBody),
        (status = 403, description = "No CONNECT", body = ErrorBody),
        (status = 404, description = "Not a voice channel the caller can see", body = ErrorBody),
        (status = 409, description = "The channel is full", body = ErrorBody),
        (status = 422, description = "No Opus audio offered", body = ErrorBody),
        (status = 503, description = "No node can serve the channel's room", body = ErrorBody)))]
pub async fn join(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
    arrived: Arrived,
) -> ApiResult<Response> {
    if let Some(res) = arrived.elsewhere(&s, id, true).await? {
        return Ok(res);
    }
    let Arrived {
        uri, headers, body, ..
    } = arrived;
    let whip = is_sdp(&headers);
    let req = if whip {
        let sdp = String::from_utf8(body.to_vec()).map_err(|_| RequestError::UnreadableBody)?;
        JoinVoiceRequest {
            sdp,
            self_mute: false,
            self_deaf: false,
        }
    } else {
        parse_json::<JoinVoiceRequest>(&body)?
    };
    let (session, sdp, voice_state) = s.core.join_voice(auth.caller(), id, req, whip).await?;
    if whip {
        // A path, not a URL: a client that joined through another node keeps talking to
        // that node, which forwards its DELETE here.
        let location = format!("{}/{session}", uri.path().trim_end_matches('/'));
        let mut res = (StatusCode::CREATED, sdp).into_response();
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(SDP));
        if let Ok(v) = HeaderValue::from_str(&location) {
            res.headers_mut().insert(LOCATION, v);
        }
        return Ok(res);
    }
    Ok((
        StatusCode::CREATED,
        JsonResponse(VoiceJoined {
            session_id: session.to_string(),
            sdp,
            voice_state,
        }),
    )
        .into_response())
}

/// Who is in the voice channel.
#[utoipa::path(get, path = "/channels/{id}/voice", tag = "voice", params(("id" = Snowflake, Path)),
    responses((status = 200, description = "Voice states", body = VoiceStateList),
        (status = 404, description = "Not a voice channel the caller can see", body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<JsonResponse<VoiceStateList>> {
    Ok(JsonResponse(VoiceStateList {
        voice_states: s.core.channel_voice_states(auth.caller(), id).await?,
    }))
}

/// The answer to a server offer (VOICE_SDP).
#[utoipa::path(post, path = "/channels/{id}/voice/{sessionId}/answer", tag = "voice",
    params(("id" = Snowflake, Path), ("sessionId" = Snowflake, Path)), request_body = SdpBody,
    responses((status = 204, description = "Applied"), (status = 400, description = "The SDP cannot be used", body = ErrorBody),
        (status = 404, description = "Not the caller's voice session", body = ErrorBody),
        (status = 409, description = "No server offer waits", body = ErrorBody),
        (status = 503, description = "The node holding the room cannot be reached", body = ErrorBody)))]
pub async fn answer(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, session)): Path<(Snowflake, Snowflake)>,
    arrived: Arrived,
) -> ApiResult<Response> {
    if let Some(res) = arrived.elsewhere(&s, id, false).await? {
        return Ok(res);
    }
    let req: SdpBody = arrived.json()?;
    s.core
        .answer_voice(auth.caller(), id, session, req.sdp)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{sdp}` or `{voiceState}`, as the PATCH asked.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoicePatched {
    /// The answer to the client's offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    /// The state after the flags changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_state: Option<VoiceState>,
}

/// A client offer (its own camera or screen) → `{sdp}`; flags → `{voiceState}`.
#[utoipa::path(patch, path = "/channels/{id}/voice/{sessionId}", tag = "voice",
    params(("id" = Snowflake, Path), ("sessionId" = Snowflake, Path)), request_body = UpdateVoiceRequest,
    responses((status = 200, description = "The answer, or the new voice state", body = VoicePatched),
        (status = 404, description = "Not the caller's voice session", body = ErrorBody),
        (status = 409, description = "A server offer waits for its answer", body = ErrorBody),
        (status = 503, description = "The node holding the room cannot be reached", body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, session)): Path<(Snowflake, Snowflake)>,
    arrived: Arrived,
) -> ApiResult<Response> {
    if let Some(res) = arrived.elsewhere(&s, id, false).await? {
        return Ok(res);
    }
    let req: UpdateVoiceRequest = arrived.json()?;
    let flags = req.self_mute.is_some()
        || req.self_deaf.is_some()
        || req.self_video.is_some()
        || req.self_stream.is_some();
    let voice_state = if flags || req.sdp.is_none() {
        Some(
            s.core
                .update_voice(auth.caller(), id, session, &req)
                .await?,
        )
    } else {
        None
    };
    let sdp = match req.sdp {
        Some(offer) => Some(
            s.core
                .offer_voice(auth.caller(), id, session, offer)
                .await?,
        ),
        None => None,
    };
    Ok(JsonResponse(VoicePatched { sdp, voice_state }).into_response())
}

/// Leave voice. 204, or 200 for a session joined by WHIP (RFC 9725).
#[utoipa::path(delete, path = "/channels/{id}/voice/{sessionId}", tag = "voice",
    params(("id" = Snowflake, Path), ("sessionId" = Snowflake, Path)),
    responses((status = 204, description = "Left"), (status = 200, description = "Left (a WHIP session)"),
        (status = 404, description = "Not the caller's voice session", body = ErrorBody),
        (status = 503, description = "The node holding the room cannot be reached", body = ErrorBody)))]
pub async fn leave(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, session)): Path<(Snowflake, Snowflake)>,
    arrived: Arrived,
) -> ApiResult<Response> {
    if let Some(res) = arrived.elsewhere(&s, id, false).await? {
        return Ok(res);
    }
    let whip = s.core.leave_voice(auth.caller(), id, session).await?;
    Ok(if whip {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    }
    .into_response())
}
