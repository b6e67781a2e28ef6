//! Compatibility profiles (SPEC §7): other systems' REST APIs over the canonical core.
//!
//! A profile is an encoding: its handlers call the same use-cases as `/api/v1`, and its
//! failures are the canonical ones ([`crate::error::canonical`]) re-shaped by the
//! profile's [`Profile::error_body`], keeping the canonical status headers (`Retry-After`,
//! rate limits). What the profiles share lives here: the failure wrapper, the bearer-token
//! extractors and the JSON body extractor, each rejecting in the profile's shape.

use std::marker::PhantomData;

use axum::Json as JsonResponse;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use xcord_core::auth::AuthContext;
use xcord_core::ratelimit::Tier;
use xcord_core::{AuthFailure, Caller, ClientInfo, Error};
use xcord_types::FieldError;

use crate::AppState;
use crate::auth::{RateHeaders, bearer};
use crate::error::{ApiError, canonical};
use crate::extract::Json;

pub mod hype;
pub mod hype_voice;
pub mod rtms;

/// How a profile shows a failure.
pub trait Profile: Send + Sync + 'static {
    /// The status and body for a failure the canonical table rendered as `status`,
    /// `message` and `details`.
    fn error_body(
        status: StatusCode,
        message: String,
        details: Option<Value>,
    ) -> (StatusCode, Value);
}

/// The failed fields of a canonical validation failure (422 with field details).
pub fn field_errors(status: StatusCode, details: Option<&Value>) -> Option<Vec<FieldError>> {
    details
        .filter(|_| status == StatusCode::UNPROCESSABLE_ENTITY)
        .and_then(|d| serde_json::from_value::<Vec<FieldError>>(d.clone()).ok())
}

/// A failure, shown in profile `P`'s shape.
pub struct ProfileError<P>(pub ApiError, PhantomData<P>);

impl<P, E: Into<ApiError>> From<E> for ProfileError<P> {
    fn from(e: E) -> Self {
        ProfileError(e.into(), PhantomData)
    }
}

impl<P: Profile> IntoResponse for ProfileError<P> {
    fn into_response(self) -> Response {
        let rendered = canonical(&self.0);
        // The canonical response carries the headers (and logs what must be logged).
        let (mut parts, _) = self.0.into_response().into_parts();
        let (status, body) = P::error_body(rendered.status, rendered.message, rendered.details);
        parts.status = status;
        parts.headers.remove(header::CONTENT_LENGTH);
        (parts, JsonResponse(body)).into_response()
    }
}

/// A response in profile `P`'s shape for a route it does not have.
pub fn route_not_found<P: Profile>() -> Response {
    let (status, body) = P::error_body(StatusCode::NOT_FOUND, "Route not found".into(), None);
    (status, JsonResponse(body)).into_response()
}

/// The caller, from `Authorization: Bearer`, counted against the general per-user limit,
/// as canonical authenticated routes are.
pub struct Authed<P> {
    /// The token's context.
    pub ctx: AuthContext,
    /// The limit's headers, for the response.
    pub rate: RateHeaders,
    profile: PhantomData<P>,
}

impl<P> Authed<P> {
    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.ctx.caller
    }
}

impl<P: Profile> FromRequestParts<AppState> for Authed<P> {
    type Rejection = ProfileError<P>;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            bearer(&parts.headers).ok_or(Error::Unauthenticated(AuthFailure::TokenMissing))?;
        let ctx = s.core.authenticate(token)?;
        let decision = s
            .core
            .rate_limit(Tier::General, &ctx.caller.user_id.to_string())
            .await?;
        Ok(Authed {
            ctx,
            rate: RateHeaders(decision),
            profile: PhantomData,
        })
    }
}

/// A caller if the request carries a token (which must then be valid); routes a profile
/// serves to anonymous clients too.
pub struct MaybeAuthed<P>(pub Option<Authed<P>>);

impl<P: Profile> FromRequestParts<AppState> for MaybeAuthed<P> {
    type Rejection = ProfileError<P>;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            Ok(MaybeAuthed(Some(
                Authed::from_request_parts(parts, s).await?,
            )))
        } else {
            Ok(MaybeAuthed(None))
        }
    }
}

/// The per-address limit of account creation and login, as on the canonical routes.
pub async fn limit_address(s: &AppState, tier: Tier, c: &ClientInfo) -> Result<(), ApiError> {
    let ip = c.ip.clone().unwrap_or_else(|| "unknown".into());
    s.core.rate_limit(tier, &ip).await?;
    Ok(())
}

/// A JSON body (the canonical extractor's checks), rejected in profile `P`'s shape.
pub struct Body<P, T>(pub T, PhantomData<P>);

impl<P: Profile, T: DeserializeOwned> FromRequest<AppState> for Body<P, T> {
    type Rejection = ProfileError<P>;
    async fn from_request(req: Request, s: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Body(Json::<T>::from_request(req, s).await?.0, PhantomData))
    }
}
