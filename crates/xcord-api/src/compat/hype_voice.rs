//! `/compat/hype/api/voice/*`: seed 002's mediasoup-style voice signaling (SPEC §7) over the
//! canonical voice use-cases (`xcord_core::voice`, "transports") and the same SFU.
//!
//! Both sets of paths are served: the published client's (`rtp-capabilities/:channelId`,
//! `create-transport`, `connect-transport`, `produce`, `producers/:channelId/user/:userId`,
//! `consume`, `leave`) and the seed document's (`rtp-capabilities`, `transport/send|recv`,
//! `transport/connect`, `produce`, `consume`, `DELETE produce/:id`). Answers are mediasoup's
//! shapes without the `{success, data}` envelope, as mediasoup-client takes them; failures
//! are the profile's `{success: false, error}`.
//!
//! A producer is named `USERID:KIND` (`audio`, `video`, `screen`): a participant sends at most
//! one track of each kind, so the name is stable and the socket's `new_producer` frames can
//! be made from VOICE_TRACK alone. A consumer is named `TRANSPORTID:MID`.

use axum::Json as JsonResponse;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use xcord_core::error::{Denial, SelfAction};
use xcord_core::voice::{
    AUDIO_LEVEL_EXTENSION_ID as AUDIO_LEVEL_ID, Consumption, MID_EXTENSION_ID as MID_ID,
    OPUS_PAYLOAD_TYPE as OPUS_PT, OpenedTransport, Production, TrackKind, TransportDirection,
    VP8_PAYLOAD_TYPE as VP8_PT,
};
use xcord_core::{Caller, Error};
use xcord_types::Snowflake;
use xcord_types::compat::id_in;

use super::hype::Hype;
use super::{Authed, ProfileError};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Path;
use crate::routes::voice::Arrived;

type HypeResult<T = Response> = Result<T, ProfileError<Hype>>;
type HypeAuth = Authed<Hype>;

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// The routes, merged into the profile's (under `/compat/hype`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/voice/rtp-capabilities", get(capabilities))
        .route("/api/voice/rtp-capabilities/{channel}", get(capabilities))
        .route("/api/voice/create-transport", post(create_transport))
        .route("/api/voice/transport/send", post(send_transport))
        .route("/api/voice/transport/recv", post(recv_transport))
        .route("/api/voice/connect-transport", post(connect_transport))
        .route("/api/voice/transport/connect", post(connect_transport))
        .route("/api/voice/produce", post(produce))
        .route("/api/voice/produce/{id}", delete(close_producer))
        .route("/api/voice/producers/{channel}/user/{user}", get(producers))
        .route("/api/voice/consume", post(consume))
        .route("/api/voice/leave", post(leave))
}

fn opus_parameters() -> Value {
    json!({"minptime": 10, "useinbandfec": 1})
}

fn video_feedback() -> Value {
    json!([
        {"type": "nack", "parameter": ""},
        {"type": "nack", "parameter": "pli"},
        {"type": "ccm", "parameter": "fir"},
    ])
}

/// The router's capabilities: Opus and VP8 at the SFU's payload types, and the two header
/// extensions it reads and writes (audio level, MID).
fn rtp_capabilities() -> Value {
    let ext = |kind: &str, uri: &str, id: u8| {
        json!({"kind": kind, "uri": uri, "preferredId": id, "preferredEncrypt": false,
            "direction": "sendrecv"})
    };
    json!({
        "codecs": [
            {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": OPUS_PT,
                "clockRate": 48000, "channels": 2, "parameters": opus_parameters(),
                "rtcpFeedback": []},
            {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": VP8_PT,
                "clockRate": 90000, "parameters": {}, "rtcpFeedback": video_feedback()},
        ],
        "headerExtensions": [
            ext("audio", AUDIO_LEVEL_URI, AUDIO_LEVEL_ID),
            ext("audio", MID_URI, MID_ID),
            ext("video", MID_URI, MID_ID),
        ],
    })
}

/// `GET /api/voice/rtp-capabilities[/:channelId]`: the same for every channel, so it needs
/// no sign-in.
async fn capabilities() -> Response {
    JsonResponse(json!({"rtpCapabilities": rtp_capabilities()})).into_response()
}

fn required(field: &str) -> Error {
    Error::invalid(field, "required", format!("{field} is required"))
}

/// The id in `field` (absent or `null`: none); anything else than an id is refused.
fn id_at(body: &Value, field: &str) -> Result<Option<Snowflake>, Error> {
    let v = &body[field];
    if v.is_null() {
        return Ok(None);
    }
    id_in(v)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "id", format!("{field} must be an id")))
}

fn required_id(body: &Value, field: &str) -> Result<Snowflake, Error> {
    id_at(body, field)?.ok_or_else(|| required(field))
}

/// A `userId` in the body must be the caller (the client repeats who it is).
fn only_self(caller: &Caller, body: &Value) -> Result<(), Error> {
    match id_at(body, "userId")? {
        Some(u) if u != caller.user_id => Err(Error::Denied(Denial::NotSelf(SelfAction::UseVoice))),
        _ => Ok(()),
    }
}

/// The channel the request is about: `channelId`, else the one the caller is in.
fn channel_of(s: &AppState, caller: &Caller, body: &Value) -> Result<Snowflake, Error> {
    if let Some(c) = id_at(body, "channelId")? {
        return Ok(c);
    }
    s.core
        .voice_state_of(caller.user_id)
        .and_then(|v| v.channel_id)
        .ok_or_else(|| required("channelId"))
}

/// `{id, iceParameters, iceCandidates, dtlsParameters}` as mediasoup-client takes them:
/// ICE-lite, the SFU's one UDP address and the passive TCP candidate on the same port.
fn transport_json(t: &OpenedTransport) -> Value {
    let ip = t.info.address.ip().to_string();
    let port = t.info.address.port();
    json!({
        "id": t.id.to_string(),
        "iceParameters": {
            "usernameFragment": t.info.ufrag,
            "password": t.info.pwd,
            "iceLite": true,
        },
        "iceCandidates": [
            {"foundation": "udpcandidate", "priority": 1_076_302_079u32, "ip": ip,
                "address": ip, "protocol": "udp", "port": port, "type": "host"},
            {"foundation": "tcpcandidate", "priority": 1_076_276_479u32, "ip": ip,
                "address": ip, "protocol": "tcp", "port": port, "type": "host",
                "tcpType": "passive"},
        ],
        "dtlsParameters": {
            "role": "auto",
            "fingerprints": [{"algorithm": "sha-256", "value": t.info.fingerprint}],
        },
        "channelId": t.state.channel_id,
    })
}

async fn open(
    s: &AppState,
    auth: HypeAuth,
    arrived: Arrived,
    direction: Option<TransportDirection>,
) -> HypeResult {
    let body: Value = arrived.json_or_empty()?;
    only_self(auth.caller(), &body)?;
    let direction = match direction {
        Some(d) => d,
        None => match body["direction"].as_str() {
            Some("send") => TransportDirection::Send,
            Some("recv") => TransportDirection::Recv,
            Some(_) => {
                return Err(
                    Error::invalid("direction", "enum", "direction must be send or recv").into(),
                );
            }
            None => return Err(required("direction").into()),
        },
    };
    let channel = channel_of(s, auth.caller(), &body)?;
    if let Some(res) = arrived.elsewhere(s, channel, true).await? {
        return Ok(res);
    }
    let t = s
        .core
        .open_voice_transport(auth.caller(), channel, direction)
        .await?;
    Ok((auth.rate, JsonResponse(transport_json(&t))).into_response())
}

/// `POST /api/voice/create-transport {channelId, userId, direction}`.
async fn create_transport(
    State(s): State<AppState>,
    auth: HypeAuth,
    arrived: Arrived,
) -> HypeResult {
    open(&s, auth, arrived, None).await
}

/// `POST /api/voice/transport/send {channelId}` (the seed's path).
async fn send_transport(State(s): State<AppState>, auth: HypeAuth, arrived: Arrived) -> HypeResult {
    open(&s, auth, arrived, Some(TransportDirection::Send)).await
}

/// `POST /api/voice/transport/recv {channelId}` (the seed's path).
async fn recv_transport(State(s): State<AppState>, auth: HypeAuth, arrived: Arrived) -> HypeResult {
    open(&s, auth, arrived, Some(TransportDirection::Recv)).await
}

/// Forwards to the node holding the room of the channel the request names (or the caller
/// is in); `None` when this node serves it (also when no channel is known: the caller has
/// no transport anywhere then).
async fn routed(
    s: &AppState,
    caller: &Caller,
    arrived: &Arrived,
    body: &Value,
) -> HypeResult<Option<Response>> {
    let Ok(channel) = channel_of(s, caller, body) else {
        return Ok(None);
    };
    Ok(arrived.elsewhere(s, channel, false).await?)
}

/// The fingerprint the client gives (`dtlsParameters.fingerprints`), SHA-256 preferred.
fn client_fingerprint(body: &Value) -> Result<(String, String), Error> {
    let bad = || {
        Error::invalid(
            "dtlsParameters",
            "fingerprint",
            "dtlsParameters.fingerprints must hold {algorithm, value}",
        )
    };
    let list = body["dtlsParameters"]["fingerprints"]
        .as_array()
        .ok_or_else(bad)?;
    let pick = list
        .iter()
        .find(|f| f["algorithm"].as_str() == Some("sha-256"))
        .or_else(|| list.first())
        .ok_or_else(bad)?;
    match (pick["algorithm"].as_str(), pick["value"].as_str()) {
        (Some(a), Some(v)) => Ok((a.to_owned(), v.to_owned())),
        _ => Err(bad()),
    }
}

/// `POST /api/voice/connect-transport {transportId, dtlsParameters}` (also
/// `/transport/connect`).
async fn connect_transport(
    State(s): State<AppState>,
    auth: HypeAuth,
    arrived: Arrived,
) -> HypeResult {
    let body: Value = arrived.json()?;
    only_self(auth.caller(), &body)?;
    if let Some(res) = routed(&s, auth.caller(), &arrived, &body).await? {
        return Ok(res);
    }
    let transport = required_id(&body, "transportId")?;
    let (algorithm, value) = client_fingerprint(&body)?;
    s.core
        .connect_voice_transport(auth.caller(), transport, &algorithm, &value)
        .await?;
    Ok((
        auth.rate,
        JsonResponse(json!({"success": true, "connected": true})),
    )
        .into_response())
}

fn kind_at(body: &Value) -> Result<TrackKind, Error> {
    let name = body["kind"].as_str().ok_or_else(|| required("kind"))?;
    TrackKind::from_name(name)
        .ok_or_else(|| Error::invalid("kind", "enum", "kind must be audio, video or screen"))
}

/// What the client's `rtpParameters` say it sends: its m-line, codec and SSRCs.
fn production(kind: TrackKind, p: &Value) -> Result<Production, Error> {
    let bad = |m: &str| Error::invalid("rtpParameters", "usable", m.to_owned());
    let mid = p["mid"]
        .as_str()
        .ok_or_else(|| bad("rtpParameters.mid is required"))?;
    if !lists_codec(&p["codecs"], kind) {
        return Err(bad(&format!(
            "rtpParameters.codecs must include {}",
            codec_of(kind)
        )));
    }
    let encoding = &p["encodings"][0];
    let ssrc = encoding["ssrc"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| bad("rtpParameters.encodings[0].ssrc is required"))?;
    let rtx = encoding["rtx"]["ssrc"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok());
    Ok(Production {
        kind,
        mid: mid.to_owned(),
        ssrc,
        rtx,
    })
}

/// The codec the SFU carries `kind` with.
fn codec_of(kind: TrackKind) -> &'static str {
    if kind == TrackKind::Audio {
        "audio/opus"
    } else {
        "video/vp8"
    }
}

/// Whether a list of codecs (`[{mimeType, …}]`) holds the one `kind` is carried with.
fn lists_codec(codecs: &Value, kind: TrackKind) -> bool {
    let wanted = codec_of(kind);
    codecs.as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["mimeType"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(wanted))
        })
    })
}

fn producer_id(user: Snowflake, kind: TrackKind) -> String {
    xcord_types::compat::hype::producer_id(user, kind.name())
}

fn parse_producer(id: &str) -> Option<(Snowflake, TrackKind)> {
    let (user, kind) = id.split_once(':')?;
    let user = user.parse::<i64>().ok().filter(|u| *u > 0)?;
    Some((Snowflake::from_i64(user), TrackKind::from_name(kind)?))
}

/// `POST /api/voice/produce {transportId, kind, rtpParameters}` → `{id}`.
async fn produce(State(s): State<AppState>, auth: HypeAuth, arrived: Arrived) -> HypeResult {
    let body: Value = arrived.json()?;
    only_self(auth.caller(), &body)?;
    if let Some(res) = routed(&s, auth.caller(), &arrived, &body).await? {
        return Ok(res);
    }
    let transport = required_id(&body, "transportId")?;
    let kind = kind_at(&body)?;
    let p = production(kind, &body["rtpParameters"])?;
    s.core.produce_voice(auth.caller(), transport, p).await?;
    let id = producer_id(auth.caller().user_id, kind);
    Ok((auth.rate, JsonResponse(json!({"id": id, "producerId": id}))).into_response())
}

/// `DELETE /api/voice/produce/:id`: stops one of the caller's own tracks.
async fn close_producer(
    State(s): State<AppState>,
    auth: HypeAuth,
    id: Result<Path<String>, ApiError>,
    arrived: Arrived,
) -> HypeResult {
    let id = id?.0;
    let (user, kind) = parse_producer(&id)
        .filter(|(u, _)| *u == auth.caller().user_id)
        .ok_or(Error::NotFound(xcord_core::Entity::Producer))?;
    let body = json!({"userId": user});
    if let Some(res) = routed(&s, auth.caller(), &arrived, &body).await? {
        return Ok(res);
    }
    if !s.core.close_voice_producer(auth.caller(), kind).await? {
        return Err(Error::NotFound(xcord_core::Entity::Producer).into());
    }
    Ok((auth.rate, JsonResponse(json!({"success": true}))).into_response())
}

/// `GET /api/voice/producers/:channelId/user/:userId` → `{producers: [{id, userId, kind}]}`.
async fn producers(
    State(s): State<AppState>,
    auth: HypeAuth,
    ids: Result<Path<(Snowflake, Snowflake)>, ApiError>,
    arrived: Arrived,
) -> HypeResult {
    let (channel, user) = ids?.0;
    if let Some(res) = arrived.elsewhere(&s, channel, false).await? {
        return Ok(res);
    }
    let kinds = s.core.voice_producers(auth.caller(), channel, user).await?;
    let list: Vec<Value> = kinds
        .into_iter()
        .map(|k| json!({"id": producer_id(user, k), "userId": user, "kind": k.name()}))
        .collect();
    Ok((auth.rate, JsonResponse(json!({"producers": list}))).into_response())
}

/// Whether the client's `rtpCapabilities` (when given) can receive what it asks for.
fn can_receive(caps: &Value, kind: TrackKind) -> bool {
    caps.is_null() || lists_codec(&caps["codecs"], kind)
}

/// The consumer as mediasoup-client's `transport.consume()` takes it.
fn consumer_json(transport: Snowflake, producer: &str, kind: TrackKind, c: &Consumption) -> Value {
    let (media, codec, mut extensions) = if kind == TrackKind::Audio {
        (
            "audio",
            json!({"mimeType": "audio/opus", "payloadType": c.payload_type, "clockRate": 48000,
                "channels": 2, "parameters": opus_parameters(), "rtcpFeedback": []}),
            vec![
                json!({"uri": AUDIO_LEVEL_URI, "id": AUDIO_LEVEL_ID, "encrypt": false,
                "parameters": {}}),
            ],
        )
    } else {
        (
            "video",
            json!({"mimeType": "video/VP8", "payloadType": c.payload_type, "clockRate": 90000,
                "parameters": {}, "rtcpFeedback": video_feedback()}),
            Vec::new(),
        )
    };
    extensions.push(json!({"uri": MID_URI, "id": MID_ID, "encrypt": false, "parameters": {}}));
    json!({
        "id": format!("{transport}:{}", c.mid),
        "producerId": producer,
        "kind": media,
        "type": "simple",
        "producerPaused": false,
        "paused": false,
        "rtpParameters": {
            "mid": c.mid,
            "codecs": [codec],
            "headerExtensions": extensions,
            "encodings": [{"ssrc": c.ssrc}],
            "rtcp": {"cname": c.cname, "reducedSize": true, "mux": true},
        },
    })
}

/// `POST /api/voice/consume {transportId, producerId, rtpCapabilities}`: starts sending the
/// track at once (not paused).
async fn consume(State(s): State<AppState>, auth: HypeAuth, arrived: Arrived) -> HypeResult {
    let body: Value = arrived.json()?;
    only_self(auth.caller(), &body)?;
    if let Some(res) = routed(&s, auth.caller(), &arrived, &body).await? {
        return Ok(res);
    }
    let producer = body["producerId"]
        .as_str()
        .ok_or_else(|| required("producerId"))?;
    let (source, kind) =
        parse_producer(producer).ok_or(Error::NotFound(xcord_core::Entity::Producer))?;
    if !can_receive(&body["rtpCapabilities"], kind) {
        return Err(Error::invalid(
            "rtpCapabilities",
            "usable",
            "the client cannot receive this producer's codec",
        )
        .into());
    }
    let transport = match id_at(&body, "transportId")? {
        Some(t) => t,
        None => return Err(required("transportId").into()),
    };
    let c = s
        .core
        .consume_voice(auth.caller(), transport, source, kind)
        .await?;
    Ok((
        auth.rate,
        JsonResponse(consumer_json(transport, producer, kind, &c)),
    )
        .into_response())
}

/// `POST /api/voice/leave {channelId}`: leaves voice (that channel, or wherever).
async fn leave(State(s): State<AppState>, auth: HypeAuth, arrived: Arrived) -> HypeResult {
    let body: Value = arrived.json_or_empty()?;
    only_self(auth.caller(), &body)?;
    let channel = id_at(&body, "channelId")?;
    s.core.leave_voice_channel(auth.caller(), channel).await;
    Ok((auth.rate, JsonResponse(json!({"success": true}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_name_a_user_and_a_kind() {
        let user = Snowflake::from_i64(77);
        for kind in [TrackKind::Audio, TrackKind::Video, TrackKind::Screen] {
            assert_eq!(parse_producer(&producer_id(user, kind)), Some((user, kind)));
        }
        for bad in ["77", "77:voice", "x:audio", "0:audio", ":audio", ""] {
            assert_eq!(parse_producer(bad), None, "{bad}");
        }
    }

    #[test]
    fn rtp_parameters_need_a_mid_the_kind_s_codec_and_an_ssrc() {
        let audio = json!({
            "mid": "0",
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111}],
            "encodings": [{"ssrc": 1234, "rtx": {"ssrc": 99}}],
        });
        let p = production(TrackKind::Audio, &audio).expect("usable");
        assert_eq!((p.mid.as_str(), p.ssrc, p.rtx), ("0", 1234, Some(99)));
        assert!(production(TrackKind::Video, &audio).is_err(), "no VP8");
        let mut no_ssrc = audio.clone();
        no_ssrc["encodings"] = json!([{}]);
        assert!(production(TrackKind::Audio, &no_ssrc).is_err());
        let mut big = audio.clone();
        big["encodings"][0]["ssrc"] = json!(1u64 << 33);
        assert!(production(TrackKind::Audio, &big).is_err());
        let mut no_mid = audio;
        no_mid["mid"] = Value::Null;
        assert!(production(TrackKind::Audio, &no_mid).is_err());
    }

    #[test]
    fn only_the_client_s_codecs_are_consumed() {
        let opus_only = json!({"codecs": [{"mimeType": "audio/opus"}]});
        assert!(can_receive(&opus_only, TrackKind::Audio));
        assert!(!can_receive(&opus_only, TrackKind::Screen));
        assert!(can_receive(&Value::Null, TrackKind::Video));
    }
}
