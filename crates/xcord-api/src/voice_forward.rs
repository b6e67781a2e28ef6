//! Voice signaling reaches the node holding a channel's room (SPEC §5, scale mode): a
//! request that arrives elsewhere is forwarded there over HTTP and the answer relayed as
//! it came. The room directory (`xcord_core::voice::VoiceRooms`) says which node that is.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use xcord_core::Error;
use xcord_core::voice::RoomOwner;

use crate::error::ApiError;

/// Marks a forwarded request with the forwarding node's id; such a request is served
/// where it arrives, never forwarded again.
pub const FORWARDED_HEADER: &str = "x-xcord-forwarded";

/// Longest a forwarded request may take in all; connecting gets less.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer relayed (an SDP answer is a few KiB).
const MAX_RELAYED_BYTES: usize = 1024 * 1024;

/// Whether another node forwarded this request.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// The HTTP client voice requests are forwarded with (one pool per node).
#[derive(Debug, Clone)]
pub struct VoiceForwarder {
    client: reqwest::Client,
}

impl VoiceForwarder {
    /// A client with bounded timeouts that follows no redirects and uses no proxy (nodes
    /// talk to each other directly).
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Self { client })
    }

    /// Sends the request (method, path and query, body, `Authorization`, `Content-Type`)
    /// to `owner` and relays its status, `Content-Type`, `Location` and body. An owner that
    /// cannot be reached or does not answer in time is a 503.
    pub async fn forward(
        &self,
        owner: &RoomOwner,
        this_node: u16,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let unavailable = |e: reqwest::Error| {
            ApiError::Core(Error::Unavailable(anyhow::Error::new(e).context(format!(
                "voice node {} at {} did not answer a forwarded request",
                owner.node_id, owner.url
            ))))
        };
        let mut req = self
            .client
            .request(method, format!("{}{path_and_query}", owner.url))
            .header(FORWARDED_HEADER, this_node.to_string())
            .body(body);
        for name in [AUTHORIZATION, CONTENT_TYPE] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v.clone());
            }
        }
        let mut res = req.send().await.map_err(unavailable)?;
        let mut relayed = Response::builder().status(res.status());
        for name in [CONTENT_TYPE, LOCATION] {
            if let Some(v) = res.headers().get(&name) {
                relayed = relayed.header(name, v.clone());
            }
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(unavailable)? {
            if bytes.len() + chunk.len() > MAX_RELAYED_BYTES {
                return Err(ApiError::Core(Error::Unavailable(anyhow::anyhow!(
                    "voice node {} answered a forwarded request with too much",
                    owner.node_id
                ))));
            }
            bytes.extend_from_slice(&chunk);
        }
        relayed.body(Body::from(bytes)).map_err(|e| {
            ApiError::Core(Error::Internal(
                anyhow::Error::new(e).context("relaying a forwarded voice answer"),
            ))
        })
    }
}
