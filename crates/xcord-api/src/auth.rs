//! Authentication and rate limits at the HTTP edge.
//!
//! Authenticated route groups sit behind [`require_auth`]: it checks the bearer token once,
//! counts the request against the per-user general limit, and leaves the [`AuthContext`]
//! in the request for the [`Auth`] extractor. Public account routes sit behind a per-address
//! limit ([`limit_by_ip`]). Every response of a limited route carries `X-RateLimit-*`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use serde::{Deserialize, Deserializer};
use xcord_core::auth::AuthContext;
use xcord_core::ratelimit::{RateDecision, Tier};
use xcord_core::{AuthFailure, Caller, ClientInfo, Error};
use xcord_types::Snowflake;

use crate::AppState;
use crate::error::{ApiError, RequestError};

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Sets `X-RateLimit-Limit/Remaining/Reset` from a decision (none when limits are off).
pub struct RateHeaders(pub Option<RateDecision>);

impl IntoResponseParts for RateHeaders {
    type Error = std::convert::Infallible;
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        // A narrower limit set closer to the handler (messages) keeps its headers.
        if let Some(d) = self.0
            && !res.headers().contains_key("x-ratelimit-limit")
        {
            let h = res.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
            h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_secs));
        }
        Ok(res)
    }
}

/// Requires a valid, unrevoked access token and applies the general per-user limit.
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ctx = match bearer(req.headers()) {
        None => {
            return ApiError::from(Error::Unauthenticated(AuthFailure::TokenMissing))
                .into_response();
        }
        Some(token) => match state.core.authenticate(token) {
            Ok(ctx) => ctx,
            Err(e) => return ApiError::Core(e).into_response(),
        },
    };
    let decision = match state
        .core
        .rate_limit(Tier::General, &ctx.caller.user_id.to_string())
        .await
    {
        Ok(d) => d,
        Err(e) => return ApiError::Core(e).into_response(),
    };
    req.extensions_mut().insert(ctx);
    (RateHeaders(decision), next.run(req).await).into_response()
}

/// The client's address as the rate limiter and session list see it.
pub fn client_ip(req_parts: &axum::http::Extensions) -> Option<String> {
    req_parts
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// A per-address limit for one tier (register, login).
pub async fn limit_by_ip(state: AppState, tier: Tier, req: Request, next: Next) -> Response {
    let ip = client_ip(req.extensions()).unwrap_or_else(|| "unknown".into());
    match state.core.rate_limit(tier, &ip).await {
        Ok(d) => (RateHeaders(d), next.run(req).await).into_response(),
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// The authenticated caller (requires [`require_auth`] on the route).
#[derive(Debug, Clone)]
pub struct Auth(pub AuthContext);

impl Auth {
    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.0.caller
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<AuthContext>()
            .cloned()
            .map(Auth)
            .ok_or(ApiError::Core(Error::Unauthenticated(
                AuthFailure::Anonymous,
            )))
    }
}

/// Where the request came from.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(ClientInfo {
            ip: client_ip(&parts.extensions),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }))
    }
}

/// A user in a path: a snowflake, or `@me` for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRef {
    /// The caller.
    Me,
    /// A user id.
    Id(Snowflake),
}

impl UserRef {
    /// The id this names for `caller`.
    pub fn resolve(self, caller: &Caller) -> Snowflake {
        match self {
            UserRef::Me => caller.user_id,
            UserRef::Id(id) => id,
        }
    }
}

impl<'de> Deserialize<'de> for UserRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s == "@me" {
            return Ok(UserRef::Me);
        }
        s.parse().map(UserRef::Id).map_err(serde::de::Error::custom)
    }
}

/// The `If-Match` header as an entity version, when present (SPEC: optimistic concurrency).
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => {
                let text = v.to_str().map_err(|_| RequestError::IfMatchNotText)?;
                Ok(IfMatch(Some(crate::extract::parse_if_match(text)?)))
            }
        }
    }
}
