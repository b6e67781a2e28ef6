//! The HTTP surface of xcord: REST under `/api/v1` (and the same router at `/api/rest`),
//! health, metrics, the OpenAPI document and its browsable page.
//!
//! Handlers are thin: parse with this crate's extractors, call one use-case, map the result.
//! Every failure leaves as the SPEC §3 error body through [`error::ApiError`].

pub mod auth;
pub mod compat;
pub mod error;
pub mod extract;
pub mod health;
pub mod layers;
pub mod metrics;
pub mod openapi;
mod router;
pub mod routes;
mod state;
pub mod voice_forward;

pub use router::{HttpSettings, apply_layers, build_router, openapi as openapi_document};
pub use state::{AppState, AppStateInner};
pub use voice_forward::VoiceForwarder;
