//! Use-cases called on the core directly, without HTTP: what each answers, and what it
//! leaves behind, on both backends. The HTTP tests cover the mapping to status codes; these
//! pin the core's own contract, which every API surface (and the gateway) shares.

use serde_json::json;
use xcord_core::{Caller, Core, Denial, Entity, Error, Scope};
use xcord_permissions::bits::{MANAGE_CHANNELS, VIEW_CHANNELS};
use xcord_testkit::{Backend, TestApp, TestUser, on_both_backends, room, spawn_app};
use xcord_types::Snowflake;

on_both_backends!(
    servers_and_channels_through_the_core,
    moderation_rules_through_the_core,
    messages_through_the_core,
    permission_refusals_name_the_missing_bit,
);

fn caller(app: &TestApp, user: &TestUser) -> Caller {
    app.state
        .core
        .authenticate(&user.token)
        .unwrap_or_else(|e| panic!("the fixture's token does not authenticate: {e}"))
        .caller
}

fn core(app: &TestApp) -> &Core {
    &app.state.core
}

fn id(s: &str) -> Snowflake {
    s.parse()
        .unwrap_or_else(|_| panic!("the fixture's id {s} is not a snowflake"))
}

fn request<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("the test's request does not parse: {e}"))
}

async fn servers_and_channels_through_the_core(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "uc").await;
    let outsider = app.register("uc_outsider").await;
    let (owner, member, stranger) = (
        caller(&app, &r.owner),
        caller(&app, &r.member),
        caller(&app, &outsider),
    );
    let server = id(&r.server);

    // A server the caller is not in does not exist for them.
    match core(&app).get_server(&stranger, server).await {
        Err(Error::NotFound(Entity::Server)) => {}
        other => panic!("expected NotFound(server), got {other:?}"),
    }
    // A plain member may not create channels; a bad type is a field failure, reported
    // before permissions are looked at.
    match core(&app)
        .create_channel(&member, server, request(json!({"name": "x"})))
        .await
    {
        Err(Error::MissingPermission { .. }) => {}
        other => panic!("expected MissingPermission, got {other:?}"),
    }
    match core(&app)
        .create_channel(
            &member,
            server,
            request(json!({"name": "x", "type": "stage"})),
        )
        .await
    {
        Err(Error::Validation(fields)) => assert_eq!(fields[0].field, "type"),
        other => panic!("expected a validation failure, got {other:?}"),
    }
    // A private channel: the member cannot see it, its creator can, and a stale version
    // cannot change it.
    let private = core(&app)
        .create_channel(
            &owner,
            server,
            request(json!({"name": "staff",
                "permissionOverwrites": [{"id": r.server, "type": "role", "allow": 0, "deny": VIEW_CHANNELS}]})),
        )
        .await
        .unwrap_or_else(|e| panic!("create_channel: {e:?}"));
    match core(&app).get_channel(&member, private.id).await {
        Err(Error::NotFound(Entity::Channel)) => {}
        other => panic!("expected NotFound(channel), got {other:?}"),
    }
    let seen = core(&app)
        .get_channel(&owner, private.id)
        .await
        .unwrap_or_else(|e| panic!("get_channel: {e:?}"));
    assert_eq!(seen.name.as_deref(), Some("staff"));
    let stale = core(&app)
        .update_channel(
            &owner,
            private.id,
            request(json!({"topic": "t"})),
            Some(seen.version + 7),
        )
        .await;
    assert!(
        matches!(stale, Err(Error::StaleVersion { .. })),
        "a stale version: {stale:?}"
    );
    let unchanged = core(&app)
        .get_channel(&owner, private.id)
        .await
        .unwrap_or_else(|e| panic!("get_channel: {e:?}"));
    assert_eq!(unchanged.topic, None);
}

async fn moderation_rules_through_the_core(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "ucmod").await;
    let (owner, member) = (caller(&app, &r.owner), caller(&app, &r.member));
    let server = id(&r.server);
    // Nobody acts on the owner; nobody kicks themselves; a plain member kicks nobody.
    for (who, target) in [
        (&member, owner.user_id),
        (&owner, owner.user_id),
        (&member, member.user_id),
    ] {
        let r = core(&app).kick(who, server, target, None).await;
        assert!(
            matches!(
                r,
                Err(Error::MissingPermission { .. } | Error::Denied(_) | Error::Refused(_))
            ),
            "{r:?}"
        );
    }
    // The owner kicks the member: the membership is gone and the audit log says so.
    core(&app)
        .kick(&owner, server, member.user_id, Some("spam".into()))
        .await
        .unwrap_or_else(|e| panic!("kick: {e:?}"));
    match core(&app).get_server(&member, server).await {
        Err(Error::NotFound(Entity::Server)) => {}
        other => panic!("a kicked member still sees the server: {other:?}"),
    }
    let again = core(&app).kick(&owner, server, member.user_id, None).await;
    assert!(
        matches!(again, Err(Error::NotFound(Entity::Member))),
        "{again:?}"
    );
}

async fn messages_through_the_core(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "ucmsg").await;
    let (owner, member) = (caller(&app, &r.owner), caller(&app, &r.member));
    let channel = id(&r.channel);
    let (first, created) = core(&app)
        .post_message(
            &member,
            channel,
            request(json!({"content": "hi", "nonce": "n1"})),
        )
        .await
        .unwrap_or_else(|e| panic!("post_message: {e:?}"));
    assert!(created);
    // The same nonce from the same author returns the first message, not a copy.
    let (again, created) = core(&app)
        .post_message(
            &member,
            channel,
            request(json!({"content": "hi", "nonce": "n1"})),
        )
        .await
        .unwrap_or_else(|e| panic!("post_message: {e:?}"));
    assert!(!created);
    assert_eq!(again.id, first.id);
    // Only its author edits a message.
    let edit = core(&app)
        .edit_message(
            &owner,
            channel,
            first.id,
            request(json!({"content": "x"})),
            None,
        )
        .await;
    assert!(
        matches!(edit, Err(Error::Denied(Denial::NotAuthor))),
        "{edit:?}"
    );
    // Empty content is a field failure naming `content`.
    match core(&app)
        .post_message(&member, channel, request(json!({"content": ""})))
        .await
    {
        Err(Error::Validation(fields)) => assert_eq!(fields[0].field, "content"),
        other => panic!("expected a validation failure, got {other:?}"),
    }
}

async fn permission_refusals_name_the_missing_bit(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "ucperm").await;
    let member = caller(&app, &r.member);
    let channel = id(&r.channel);
    // The refusal says which bit was missing and where it was computed, not a sentence.
    match core(&app).delete_channel(&member, channel).await {
        Err(Error::MissingPermission { missing, scope }) => {
            assert_eq!(missing, MANAGE_CHANNELS);
            assert_eq!(scope, Scope::Channel(channel));
        }
        other => panic!("expected MissingPermission(MANAGE_CHANNELS), got {other:?}"),
    }
    match core(&app)
        .create_channel(&member, id(&r.server), request(json!({"name": "x"})))
        .await
    {
        Err(Error::MissingPermission { missing, scope }) => {
            assert_eq!(missing, MANAGE_CHANNELS);
            assert_eq!(scope, Scope::Server(id(&r.server)));
        }
        other => panic!("expected MissingPermission(MANAGE_CHANNELS), got {other:?}"),
    }
    // The channel is still there for its members.
    core(&app)
        .get_channel(&member, channel)
        .await
        .unwrap_or_else(|e| panic!("get_channel: {e:?}"));
}
