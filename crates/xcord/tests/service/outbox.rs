//! A use-case's change, audit row and events commit together (the transactional outbox):
//! a failed outbox write leaves nothing behind, and an event whose publisher died after the
//! commit still reaches clients, through any node's relay.

use std::time::Duration;

use serde_json::json;
use xcord_bus::Topic;
use xcord_store::{Backend, RolePatch, Versioned};
use xcord_testkit::{on_both_backends, room, say, spawn_app, string_at};
use xcord_types::Snowflake;
use xcord_types::events::{Event, RoleChanged};

on_both_backends!(
    an_outbox_write_that_fails_leaves_no_change_and_no_event,
    an_event_committed_but_not_published_goes_out_through_the_relay,
    a_late_event_does_not_undo_a_newer_change,
    markers_without_an_event_do_not_hold_up_the_relay,
);

/// Makes every insert into the outbox fail.
async fn fail_outbox_inserts(app: &xcord_testkit::TestApp) {
    crate::hardening::fail_inserts(app, "fail_outbox", "event_outbox", "TRUE").await;
}

async fn heal_outbox(app: &xcord_testkit::TestApp) {
    let sql = match app.backend() {
        Backend::Sqlite => "DROP TRIGGER fail_outbox",
        Backend::Postgres => {
            "DROP TRIGGER fail_outbox ON event_outbox; DROP FUNCTION fail_outbox()"
        }
    };
    sqlx::raw_sql(sql)
        .execute(app.state.core.store.pool())
        .await
        .expect("drop the trigger");
}

/// Changes a role as its use-case would, and commits the change with its ROLE_UPDATE, but
/// publishes nothing: what a node that dies right after its commit leaves behind.
pub(crate) async fn update_role_and_die(
    core: &xcord_core::Core,
    server: Snowflake,
    role: Snowflake,
    patch: &RolePatch,
) {
    let mut uow = core.begin().await.expect("begin");
    let Versioned::Updated(changed) = core
        .store
        .update_role(uow.tx(), role, patch, None, core.clock.now())
        .await
        .expect("update")
    else {
        panic!("the role is there");
    };
    let event = Event::RoleUpdate(RoleChanged {
        server_id: server,
        role: xcord_core::servers::role_to_wire(&changed),
    });
    uow.emit(Topic::Server(server), event).expect("emit");
    uow.commit_unpublished().await.expect("commit");
}

async fn role_names(app: &xcord_testkit::TestApp, token: &str, server: &str) -> Vec<String> {
    let roles = app.get_as(token, &format!("/servers/{server}/roles")).await;
    roles.expect_status(200, "roles");
    roles.body["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

async fn an_outbox_write_that_fails_leaves_no_change_and_no_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "outboxfail").await;
    let s = &r.server;
    let keep = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/roles"),
            &json!({"name": "keeper"}),
        )
        .await;
    keep.expect_status(201, "role");
    let keep_id = string_at(&keep.body, "/id");
    let audit_before = app
        .get_as(&r.owner.token, &format!("/servers/{s}/audit-log"))
        .await;
    audit_before.expect_status(200, "audit log");
    let mut sub = app.state.core.bus.subscribe(xcord_bus::TopicFilter::All);
    fail_outbox_inserts(&app).await;

    for res in [
        app.post_as(
            &r.owner.token,
            &format!("/servers/{s}/roles"),
            &json!({"name": "ghost"}),
        )
        .await,
        app.patch_as(
            &r.owner.token,
            &format!("/servers/{s}/roles/{keep_id}"),
            &json!({"name": "renamed"}),
        )
        .await,
        app.delete_as(&r.owner.token, &format!("/servers/{s}/roles/{keep_id}"))
            .await,
    ] {
        res.assert_error(500, "Internal Server Error");
        assert!(
            !res.text.contains("injected"),
            "internals leaked: {}",
            res.text
        );
    }
    // Nothing changed: no ghost, the keeper kept its name, no audit row was added.
    let names = role_names(&app, &r.owner.token, s).await;
    assert!(
        names.iter().any(|n| n == "keeper")
            && !names.iter().any(|n| n == "ghost" || n == "renamed"),
        "{names:?}"
    );
    let audit_after = app
        .get_as(&r.owner.token, &format!("/servers/{s}/audit-log"))
        .await;
    assert_eq!(audit_after.body, audit_before.body, "an audit row was kept");
    // And nobody was told otherwise: the next event is the message posted after.
    heal_outbox(&app).await;
    say(&app, &r.owner, &r.channel, "after").await;
    for _ in 0..100 {
        let ev = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("the message's event")
            .expect("bus open");
        assert!(!ev.name.starts_with("ROLE_"), "announced: {}", ev.name);
        if ev.name == "MESSAGE_CREATE" {
            return;
        }
    }
    panic!("no MESSAGE_CREATE among 100 events");
}

async fn an_event_committed_but_not_published_goes_out_through_the_relay(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "outboxlate").await;
    let s = &r.server;
    let made = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/roles"),
            &json!({"name": "before"}),
        )
        .await;
    made.expect_status(201, "role");
    let role_id: Snowflake = string_at(&made.body, "/id").parse().expect("role id");
    let server: Snowflake = s.parse().expect("server id");
    let (mut member, _) = app.gateway_as(&r.member).await;

    // The use-case's transaction commits with its event, and the node dies before it
    // publishes anything.
    let core = &app.state.core;
    let patch = RolePatch {
        name: Some("after".into()),
        ..RolePatch::default()
    };
    update_role_and_die(core, server, role_id, &patch).await;

    // The change is durable, and the event reaches the member anyway, late, once.
    assert!(
        role_names(&app, &r.owner.token, s)
            .await
            .contains(&"after".to_owned())
    );
    let ev = member.dispatch("ROLE_UPDATE").await;
    assert_eq!(ev["role"]["name"], "after");
    assert_eq!(ev["serverId"], s.as_str());
    member
        .assert_no_dispatch("ROLE_UPDATE", Duration::from_secs(3))
        .await;
    // The outbox is empty again.
    assert_eq!(
        core.relay_unpublished().await.expect("relay"),
        0,
        "an event was left to publish twice"
    );
}

async fn a_late_event_does_not_undo_a_newer_change(backend: Backend) {
    use xcord_permissions::bits::{SEND_MESSAGES, VIEW_CHANNELS};
    let app = spawn_app(backend).await;
    let r = room(&app, "outboxstale").await;
    let s = &r.server;
    // Only the role lets the member see channels.
    let everyone = app
        .patch_as(
            &r.owner.token,
            &format!("/servers/{s}/roles/{s}"),
            &json!({"permissions": SEND_MESSAGES}),
        )
        .await;
    everyone.expect_status(200, "@everyone without VIEW_CHANNELS");
    let made = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{s}/roles"),
            &json!({"name": "seer", "permissions": VIEW_CHANNELS | SEND_MESSAGES}),
        )
        .await;
    made.expect_status(201, "role");
    let role = string_at(&made.body, "/id");
    app.put_as(
        &r.owner.token,
        &format!("/servers/{s}/members/{}/roles/{role}", r.member.id),
        &json!({}),
    )
    .await
    .expect_status(204, "role given");
    let (mut member, _) = app.gateway_as(&r.member).await;

    // An older change (the role loses VIEW_CHANNELS) commits but its node dies before
    // publishing; a newer one (VIEW_CHANNELS back, and a rename) goes out at once.
    let core = &app.state.core;
    let role_id: Snowflake = role.parse().expect("role id");
    let server: Snowflake = s.parse().expect("server id");
    let patch = RolePatch {
        permissions: Some(SEND_MESSAGES as i64),
        ..RolePatch::default()
    };
    update_role_and_die(core, server, role_id, &patch).await;
    app.patch_as(
        &r.owner.token,
        &format!("/servers/{s}/roles/{role}"),
        &json!({"permissions": VIEW_CHANNELS | SEND_MESSAGES, "name": "seer2"}),
    )
    .await
    .expect_status(200, "newer change");
    assert_eq!(
        member.dispatch("ROLE_UPDATE").await["role"]["name"],
        "seer2"
    );
    // The late event arrives…
    let late = member.dispatch("ROLE_UPDATE").await;
    assert_eq!(late["role"]["name"], "seer", "the relayed, older change");
    // …and the member still sees the channel, as the database says.
    say(&app, &r.owner, &r.channel, "still visible").await;
    assert_eq!(
        member.dispatch("MESSAGE_CREATE").await["content"],
        "still visible"
    );
}

async fn markers_without_an_event_do_not_hold_up_the_relay(backend: Backend) {
    let app = spawn_app(backend).await;
    let core = &app.state.core;
    let pool = core.store.pool();
    // 600 markers (more than a relay round takes) whose events were pruned long ago.
    let old =
        (xcord_types::Timestamp::now().as_millis() - 3_600_000 - xcord_types::snowflake::EPOCH_MS)
            << 22;
    for i in 0..600_i64 {
        sqlx::query("INSERT INTO event_outbox (event_id) VALUES ($1)")
            .bind(old + i)
            .execute(pool)
            .await
            .expect("marker");
    }
    let left = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM event_outbox")
            .fetch_one(pool)
            .await
            .expect("count")
    };
    // Each round drops what it claimed; none is published.
    for _ in 0..3 {
        core.relay_unpublished().await.expect("relay");
    }
    assert_eq!(left().await, 0, "orphaned markers stayed");
}
