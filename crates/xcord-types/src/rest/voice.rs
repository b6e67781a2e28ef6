//! Voice signaling bodies (SPEC §5).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::VoiceState;

/// `POST /channels/{id}/voice` as JSON.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinVoiceRequest {
    /// The client's SDP offer, with at least one Opus audio m-line.
    pub sdp: String,
    /// Join muted.
    #[serde(default)]
    pub self_mute: bool,
    /// Join deafened.
    #[serde(default)]
    pub self_deaf: bool,
}

/// 201 to a join.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceJoined {
    /// The voice session, named in its URL and in VOICE_SDP.
    pub session_id: String,
    /// The SDP answer, with every server candidate (no trickle).
    pub sdp: String,
    /// The caller's voice state.
    pub voice_state: VoiceState,
}

/// `{sdp}`: an answer to a server offer, or a client offer and the server's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SdpBody {
    /// The SDP.
    pub sdp: String,
}

/// `PATCH /channels/{id}/voice/{sessionId}`: a new offer, or flags.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateVoiceRequest {
    /// A client offer adding or removing its own tracks (answered with `{sdp}`).
    pub sdp: Option<String>,
    /// Muted by themselves.
    pub self_mute: Option<bool>,
    /// Deafened by themselves.
    pub self_deaf: Option<bool>,
    /// Sending their camera.
    pub self_video: Option<bool>,
    /// Sharing their screen.
    pub self_stream: Option<bool>,
}

/// `GET /channels/{id}/voice`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceStateList {
    /// Who is in the channel.
    pub voice_states: Vec<VoiceState>,
}
