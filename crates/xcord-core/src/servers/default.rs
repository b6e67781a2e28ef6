//! The default server that `xcord serve --default-server NAME` makes once (seed 002's "Hype
//! Community", SPEC §7): every new user and guest joins it.

use xcord_types::Snowflake;
use xcord_types::rest::channels::{CreateChannelRequest, NewChannelKind};
use xcord_types::rest::servers::CreateServerRequest;

use crate::{ClientInfo, Core, Error, Result};

/// The shared setting naming the server.
const SETTING: &str = "default_server_id";

/// Names tried for the account that owns it: a guest account, which cannot sign in.
const OWNER_NAMES: [&str; 3] = ["system", "xcord-system", "default-server-owner"];

impl Core {
    /// The default server named `name`: the one an earlier start made (whatever it has been
    /// renamed to since), or a new one with seed 002's channels — `general` and `random`
    /// (text) and `General` (voice) — owned by a system account. Of nodes starting
    /// together, one server wins; the others delete theirs.
    pub async fn ensure_default_server(&self, name: &str) -> Result<Snowflake> {
        if let Some(id) = self.recorded_default_server().await? {
            return Ok(id);
        }
        let owner = self.default_server_owner().await?;
        let ctx = self.authenticate(&owner.access_token)?;
        let caller = ctx.caller;
        let server = self
            .create_server(
                &caller,
                CreateServerRequest {
                    name: name.to_owned(),
                    icon: None,
                },
            )
            .await?;
        self.create_channel(
            &caller,
            server.id,
            CreateChannelRequest::new("random", NewChannelKind::Text, Some("Anything goes".into())),
        )
        .await?;
        let won = self
            .store
            .set_setting_once(SETTING, &server.id.to_string(), self.clock.now())
            .await?;
        if !won {
            self.delete_server(&caller, server.id).await?;
            return self
                .recorded_default_server()
                .await?
                .ok_or_else(|| Error::Unavailable(anyhow::anyhow!("the default server vanished")));
        }
        tracing::info!(server = %server.id, name, "created the default server");
        // The owner's session is not needed again.
        if let Err(e) = self.logout(&ctx).await {
            tracing::debug!(error = %e, "the default server owner's session stays");
        }
        Ok(server.id)
    }

    /// The recorded default server, if it still exists (a deleted one is forgotten).
    async fn recorded_default_server(&self) -> Result<Option<Snowflake>> {
        let Some(value) = self.store.setting(SETTING).await? else {
            return Ok(None);
        };
        let id = value.parse::<i64>().ok().map(Snowflake::from_i64);
        match id {
            Some(id) if self.store.server(id).await?.is_some() => Ok(Some(id)),
            _ => {
                self.store.clear_setting(SETTING).await?;
                Ok(None)
            }
        }
    }

    /// A guest account to own the server: it has no password, so nobody signs in as it.
    async fn default_server_owner(&self) -> Result<xcord_types::rest::auth::LoginSuccess> {
        let client = ClientInfo {
            ip: None,
            user_agent: Some("xcord".into()),
        };
        let mut last = None;
        for name in OWNER_NAMES {
            match self.guest(name, &client).await {
                Ok(done) => return Ok(done),
                Err(e @ Error::Conflict(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        let suffix: u32 = rand::random_range(1000..10_000);
        self.guest(&format!("system-{suffix}"), &client)
            .await
            .map_err(|e| last.unwrap_or(e))
    }
}
