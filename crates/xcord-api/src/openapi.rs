//! The OpenAPI 3 document, assembled from the route annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Document-level facts; paths are added by the routers that register them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "xcord",
        description = "A self-hostable, Discord-style chat backend. REST lives under `/api/v1` \
            (also mounted at `/api/rest`); the WebSocket gateway is at `/api/ws`. Errors always \
            have the shape `{error, message, details?}`.",
        license(name = "AGPL-3.0-only")
    ),
    paths(crate::routes::cdn::get_file),
    components(schemas(xcord_types::ErrorBody, xcord_types::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts, tokens, e-mail flows, two-factor authentication, sessions"),
        (name = "users", description = "Profiles, settings, presence, relationships, keys, DM channels"),
        (name = "servers", description = "Servers (guilds)"),
        (name = "channels", description = "Server channels and permission overwrites"),
        (name = "roles", description = "Roles and their permissions"),
        (name = "members", description = "Members, nicknames and role assignment"),
        (name = "moderation", description = "Kicks, bans and the audit log"),
        (name = "invites", description = "Invites and vanity codes"),
        (name = "messages", description = "Messages, reactions, pins, attachments, search and read states"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
