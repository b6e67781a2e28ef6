//! SDP checks and the bitrate cap, on the SDP text.

use str0m::change::{SdpAnswer, SdpOffer};

/// Why an offer is refused before it reaches the WebRTC stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not parseable SDP.
    #[error("{0}")]
    Unparseable(String),
    /// No audio m-line offering Opus.
    #[error("the offer has no Opus audio")]
    NoOpus,
}

/// Parses a client offer and checks it offers Opus audio (SPEC §5: 400 and 422).
pub fn check_offer(sdp: &str) -> Result<SdpOffer, OfferError> {
    let offer =
        SdpOffer::from_sdp_string(sdp).map_err(|e| OfferError::Unparseable(e.to_string()))?;
    if !offers_opus(sdp) {
        return Err(OfferError::NoOpus);
    }
    Ok(offer)
}

/// Parses a client answer.
pub(crate) fn parse_answer(sdp: &str) -> Result<SdpAnswer, OfferError> {
    SdpAnswer::from_sdp_string(sdp).map_err(|e| OfferError::Unparseable(e.to_string()))
}

/// Whether an audio m-line (with a port, so not rejected) lists an Opus payload type.
fn offers_opus(sdp: &str) -> bool {
    let mut in_audio = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split(' ');
            in_audio = parts.next() == Some("audio") && parts.next() != Some("0");
        } else if in_audio
            && let Some(map) = line.strip_prefix("a=rtpmap:")
            && let Some((_, codec)) = map.split_once(' ')
            && codec.to_ascii_lowercase().starts_with("opus/")
        {
            return true;
        }
    }
    false
}

/// Puts `maxaveragebitrate` (bits/s) on every Opus `a=fmtp` line, replacing one already
/// there, so the far end's encoder stays under the room's bitrate.
pub(crate) fn cap_opus_bitrate(sdp: &str, kbps: u32) -> String {
    let opus_pts: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=rtpmap:"))
        .filter_map(|m| m.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/"))
        .map(|(pt, _)| pt)
        .collect();
    let bits = kbps.saturating_mul(1000);
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let opus_fmtp = body
            .strip_prefix("a=fmtp:")
            .and_then(|f| f.split_once(' '))
            .filter(|(pt, _)| opus_pts.contains(pt));
        match opus_fmtp {
            Some((pt, params)) => {
                let kept: Vec<&str> = params
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && !p.starts_with("maxaveragebitrate="))
                    .collect();
                out.push_str("a=fmtp:");
                out.push_str(pt);
                out.push(' ');
                for p in kept {
                    out.push_str(p);
                    out.push(';');
                }
                out.push_str(&format!("maxaveragebitrate={bits}"));
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";

    #[test]
    fn opus_is_found_only_on_a_live_audio_line() {
        assert!(offers_opus(AUDIO));
        assert!(!offers_opus(&AUDIO.replace("opus", "PCMU")));
        assert!(!offers_opus(&AUDIO.replace("m=audio 9", "m=audio 0")));
        assert!(!offers_opus(&AUDIO.replace("m=audio", "m=video")));
    }

    #[test]
    fn the_bitrate_cap_replaces_one_already_there() {
        let capped = cap_opus_bitrate(AUDIO, 64);
        assert!(
            capped.contains("a=fmtp:111 minptime=10;useinbandfec=1;maxaveragebitrate=64000\r\n")
        );
        let again = cap_opus_bitrate(&capped, 32);
        assert!(
            again.contains("a=fmtp:111 minptime=10;useinbandfec=1;maxaveragebitrate=32000\r\n")
        );
        assert!(!again.contains("64000"));
        assert!(again.starts_with("v=0\r\n"));
    }
}
