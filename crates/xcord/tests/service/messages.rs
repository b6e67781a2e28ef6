//! Messages over HTTP, on both backends: posting and its rules, exact history paging,
//! nonces under concurrency, replies, mentions, edits and deletes, reactions, pins,
//! attachments with signed links, search, read states, DMs with E2E payloads, events.

use std::sync::Arc;

use serde_json::{Value, json};
use xcord_core::ManualClock;
use xcord_permissions::bits::*;
use xcord_testkit::{
    Backend, TestApp, TestAppBuilder, TestUser, on_both_backends, room, say, spawn_app, string_at,
    wait_until,
};
use xcord_types::Timestamp;

on_both_backends!(
    history_pages_are_exact_in_every_direction,
    posting_rules_and_replies,
    nonces_make_retries_safe_even_concurrently,
    mentions_take_effect_only_where_they_may,
    edits_and_deletes_follow_authorship_and_permission,
    permissions_guard_every_message_route,
    slowmode_holds_even_with_rate_limits_off,
    slowmode_posts_are_forgotten_once_past_yet_still_count,
    reactions_count_and_list,
    pins_need_manage_messages,
    attachments_are_sniffed_signed_and_ranged,
    search_finds_only_readable_live_plain_messages,
    read_states_count_unread_and_mentions,
    direct_messages_and_encrypted_payloads,
    message_events_carry_full_objects,
);

fn contents(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect()
}

fn msg_ids(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

async fn history_pages_are_exact_in_every_direction(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "hist").await;
    let mut posted = Vec::new();
    for i in 0..230 {
        posted.push(string_at(
            &say(&app, &r.owner, &r.channel, &format!("m{i:03}")).await,
            "/id",
        ));
    }
    // Backwards from the newest, 100 at a time: every message exactly once, newest first.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/channels/{}/messages?limit=100&before={b}", r.channel),
            None => format!("/channels/{}/messages?limit=100", r.channel),
        };
        let page = msg_ids(&app.get_as(&r.member.token, &path).await.body);
        if page.is_empty() {
            break;
        }
        before = page.last().cloned();
        seen.extend(page);
    }
    let mut newest_first = posted.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // Forwards from the oldest with `after`: pages are newest first, and walk up with no gaps.
    let mut forward = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = msg_ids(
            &app.get_as(
                &r.member.token,
                &format!("/channels/{}/messages?limit=100&after={after}", r.channel),
            )
            .await
            .body,
        );
        if page.is_empty() {
            break;
        }
        after = page[0].clone();
        forward.extend(page.into_iter().rev());
    }
    assert_eq!(forward, posted);
    // Around a message: it and its neighbours.
    let around = msg_ids(
        &app.get_as(
            &r.member.token,
            &format!(
                "/channels/{}/messages?limit=5&around={}",
                r.channel, posted[100]
            ),
        )
        .await
        .body,
    );
    assert_eq!(
        around,
        vec![
            posted[102].clone(),
            posted[101].clone(),
            posted[100].clone(),
            posted[99].clone(),
            posted[98].clone()
        ]
    );
    let latest = app
        .get_as(
            &r.member.token,
            &format!("/channels/{}/messages", r.channel),
        )
        .await;
    assert_eq!(contents(&latest.body).len(), 50, "default limit");
    assert_eq!(contents(&latest.body)[0], "m229");
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "before=1&after=2",
        "around=abc",
    ] {
        app.get_as(
            &r.member.token,
            &format!("/channels/{}/messages?{bad}", r.channel),
        )
        .await
        .assert_error(422, "Validation Error");
    }
}

async fn posting_rules_and_replies(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "post").await;
    let path = format!("/channels/{}/messages", r.channel);
    for bad in [
        json!({"content": ""}),
        json!({"content": "   "}),
        json!({"content": "x".repeat(2001)}),
        json!({}),
        json!({"content": "x", "nonce": ""}),
    ] {
        app.post_as(&r.member.token, &path, &bad)
            .await
            .assert_error(422, "Validation Error");
    }
    app.post_as(&r.member.token, &path, &json!({"content": 5}))
        .await
        .assert_error(422, "Validation Error");
    let full = app
        .post_as(
            &r.member.token,
            &path,
            &json!({"content": "é".repeat(2000)}),
        )
        .await;
    assert_eq!(
        full.status, 201,
        "2000 characters are allowed whatever their bytes"
    );
    let first = say(&app, &r.owner, &r.channel, "question?").await;
    let reply = app
        .post_as(
            &r.member.token,
            &path,
            &json!({"content": "answer", "replyTo": first["id"]}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.body["replyTo"].clone()),
        (201, first["id"].clone())
    );
    let b = &reply.body;
    assert_eq!(
        (
            b["author"]["id"].as_str(),
            b["channelId"].as_str(),
            b["serverId"].as_str()
        ),
        (
            Some(r.member.id.as_str()),
            Some(r.channel.as_str()),
            Some(r.server.as_str())
        )
    );
    assert!(
        b["timestamp"].is_string()
            && b["edited"] == false
            && b["pinned"] == false
            && b["attachments"] == json!([])
    );
    let other = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/channels", r.server),
            &json!({"name": "other"}),
        )
        .await
        .str_at("/id");
    let elsewhere = say(&app, &r.owner, &other, "in another channel").await;
    let res = app
        .post_as(
            &r.member.token,
            &path,
            &json!({"content": "x", "replyTo": elsewhere["id"]}),
        )
        .await;
    res.assert_error(422, "Validation Error");
    assert_eq!(res.body["details"][0]["field"], "replyTo");
    app.post_as(
        &r.member.token,
        &path,
        &json!({"content": "x", "replyTo": "123"}),
    )
    .await
    .assert_error(422, "Validation Error");
    let voice = app
        .get_as(&r.owner.token, &format!("/servers/{}", r.server))
        .await
        .str_at("/channels/1/id");
    app.post_as(
        &r.member.token,
        &format!("/channels/{voice}/messages"),
        &json!({"content": "x"}),
    )
    .await
    .assert_error(422, "Validation Error");
}

async fn nonces_make_retries_safe_even_concurrently(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let r = room(&app, "nonce").await;
    let path = format!("/channels/{}/messages", r.channel);
    let first = app
        .post_as(
            &r.member.token,
            &path,
            &json!({"content": "once", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(first.status, 201);
    let again = app
        .post_as(
            &r.member.token,
            &path,
            &json!({"content": "once more", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(
        (
            again.status,
            again.body["id"].clone(),
            again.body["content"].as_str()
        ),
        (200, first.body["id"].clone(), Some("once"))
    );
    let theirs = app
        .post_as(
            &r.owner.token,
            &path,
            &json!({"content": "owner", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(theirs.status, 201, "a nonce is per author");
    // Ten racing retries of one message: one is stored.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        let (t, p) = (r.member.token.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            app.post_as(&t, &p, &json!({"content": "race", "nonce": "race-1"}))
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let res = t.await.expect("join");
        assert!(res.status == 201 || res.status == 200, "{}", res.text);
        created += usize::from(res.status == 201);
        ids.insert(res.str_at("/id"));
    }
    assert_eq!((created, ids.len()), (1, 1));
    let history = contents(
        &app.get_as(&r.member.token, &format!("{path}?limit=100"))
            .await
            .body,
    );
    assert_eq!(history.iter().filter(|c| *c == "race").count(), 1);
}

async fn mentions_take_effect_only_where_they_may(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "ment").await;
    let outsider = app.register("ment_outsider").await;
    let role = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/roles", r.server),
            &json!({"name": "Team", "mentionable": true}),
        )
        .await
        .str_at("/id");
    let text = format!(
        "hi <@{}> <@!{}> <@&{role}> <#{}> <@&999>",
        r.member.id, outsider.id, r.channel
    );
    let m = say(&app, &r.owner, &r.channel, &text).await;
    assert_eq!(
        m["mentions"]["users"],
        json!([r.member.id]),
        "non-members are not mentioned"
    );
    assert_eq!(m["mentions"]["roles"], json!([role]));
    assert_eq!(m["mentions"]["channels"], json!([r.channel]));
    assert_eq!(m["mentions"]["everyone"], false);
    // @everyone needs MENTION_EVERYONE, which @everyone has by default; take it away.
    let everyone = say(&app, &r.member, &r.channel, "@everyone look").await;
    assert_eq!(everyone["mentions"]["everyone"], true);
    let perms = EVERYONE_DEFAULT & !MENTION_EVERYONE;
    assert_eq!(
        app.patch_as(
            &r.owner.token,
            &format!("/servers/{}/roles/{}", r.server, r.server),
            &json!({"permissions": perms})
        )
        .await
        .status,
        200
    );
    let muted = say(&app, &r.member, &r.channel, "@here anyone?").await;
    assert_eq!(
        muted["mentions"]["everyone"], false,
        "without MENTION_EVERYONE it does not ping"
    );
    assert_eq!(muted["content"], "@here anyone?", "the text is kept");
    assert_eq!(
        say(&app, &r.owner, &r.channel, "@everyone owner").await["mentions"]["everyone"],
        true
    );
    // Without MENTION_EVERYONE only mentionable roles ping; their members count as mentioned.
    let quiet = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/roles", r.server),
            &json!({"name": "Quiet"}),
        )
        .await
        .str_at("/id");
    for rid in [&role, &quiet] {
        assert_eq!(
            app.put_as(
                &r.owner.token,
                &format!("/servers/{}/members/{}/roles/{rid}", r.server, r.owner.id),
                &json!({})
            )
            .await
            .status,
            204
        );
    }
    let last = say(&app, &r.owner, &r.channel, "marker").await;
    app.post_as(
        &r.owner.token,
        &format!(
            "/channels/{}/messages/{}/ack",
            r.channel,
            string_at(&last, "/id")
        ),
        &json!({}),
    )
    .await;
    let pinged = say(
        &app,
        &r.member,
        &r.channel,
        &format!("<@&{role}> <@&{quiet}>"),
    )
    .await;
    assert_eq!(
        pinged["mentions"]["roles"],
        json!([role]),
        "a non-mentionable role needs MENTION_EVERYONE"
    );
    let states = app.get_as(&r.owner.token, "/users/@me/read-states").await;
    assert_eq!(
        states.body["readStates"][0]["mentionCount"], 1,
        "{}",
        states.text
    );
}

async fn edits_and_deletes_follow_authorship_and_permission(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "edit").await;
    let m = say(&app, &r.member, &r.channel, "first draft").await;
    let path = format!("/channels/{}/messages/{}", r.channel, string_at(&m, "/id"));
    app.patch_as(&r.owner.token, &path, &json!({"content": "hijack"}))
        .await
        .assert_error(403, "Forbidden");
    app.patch_as(&r.member.token, &path, &json!({"content": ""}))
        .await
        .assert_error(422, "Validation Error");
    let e = app
        .patch_as(
            &r.member.token,
            &path,
            &json!({"content": "final <@".to_owned() + &r.owner.id + ">"}),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(
        (
            e.body["edited"].as_bool(),
            e.body["editedAt"].is_string(),
            e.body["mentions"]["users"].clone()
        ),
        (Some(true), true, json!([r.owner.id]))
    );
    assert_eq!(
        app.get_as(&r.owner.token, &path).await.body["content"],
        e.body["content"]
    );
    // Someone else's message: only with MANAGE_MESSAGES.
    let third = app.register("edit_third").await;
    let code = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/invites", r.server),
            &json!({}),
        )
        .await
        .str_at("/code");
    app.post_as(&third.token, &format!("/invites/{code}"), &json!({}))
        .await;
    app.delete_as(&third.token, &path)
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        app.delete_as(&r.owner.token, &path).await.status,
        204,
        "the owner moderates"
    );
    app.get_as(&r.member.token, &path)
        .await
        .assert_error(404, "Not Found");
    app.patch_as(&r.member.token, &path, &json!({"content": "ghost"}))
        .await
        .assert_error(404, "Not Found");
    app.delete_as(&r.member.token, &path)
        .await
        .assert_error(404, "Not Found");
    let own = say(&app, &r.member, &r.channel, "mine").await;
    assert_eq!(
        app.delete_as(
            &r.member.token,
            &format!(
                "/channels/{}/messages/{}",
                r.channel,
                string_at(&own, "/id")
            )
        )
        .await
        .status,
        204
    );
    // Bulk delete.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(say(&app, &third, &r.channel, &format!("spam {i}")).await["id"].clone());
    }
    let bulk = format!("/channels/{}/messages/bulk-delete", r.channel);
    app.post_as(&third.token, &bulk, &json!({"messageIds": ids}))
        .await
        .assert_error(403, "Forbidden");
    app.post_as(&r.owner.token, &bulk, &json!({"messageIds": [ids[0]]}))
        .await
        .assert_error(422, "Validation Error");
    app.post_as(
        &r.owner.token,
        &bulk,
        &json!({"messageIds": vec![ids[0].clone(); 101]}),
    )
    .await
    .assert_error(422, "Validation Error");
    assert_eq!(
        app.post_as(&r.owner.token, &bulk, &json!({"messageIds": ids}))
            .await
            .status,
        204
    );
    let left = contents(
        &app.get_as(&r.owner.token, &format!("/channels/{}/messages", r.channel))
            .await
            .body,
    );
    assert!(left.iter().all(|c| !c.starts_with("spam")), "{left:?}");
}

async fn permissions_guard_every_message_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "perm").await;
    let outsider = app.register("perm_outsider").await;
    let m = say(&app, &r.owner, &r.channel, "hello").await;
    let mid = string_at(&m, "/id");
    let c = &r.channel;
    for path in [
        format!("/channels/{c}/messages"),
        format!("/channels/{c}/messages/{mid}"),
        format!("/channels/{c}/pins"),
    ] {
        app.get_as(&outsider.token, &path)
            .await
            .assert_error(404, "Not Found");
    }
    app.post_as(
        &outsider.token,
        &format!("/channels/{c}/messages"),
        &json!({"content": "x"}),
    )
    .await
    .assert_error(404, "Not Found");
    app.put_as(
        &outsider.token,
        &format!("/channels/{c}/messages/{mid}/reactions/👍"),
        &json!({}),
    )
    .await
    .assert_error(404, "Not Found");
    app.post_as(
        &outsider.token,
        &format!("/channels/{c}/typing"),
        &json!({}),
    )
    .await
    .assert_error(404, "Not Found");
    app.post_as(
        &outsider.token,
        &format!("/channels/{c}/messages/{mid}/ack"),
        &json!({}),
    )
    .await
    .assert_error(404, "Not Found");
    let ow = |t: &str| format!("/channels/{c}/permissions/{t}");
    // Read-only: no SEND_MESSAGES.
    assert_eq!(
        app.put_as(
            &r.owner.token,
            &ow(&r.member.id),
            &json!({"targetType": "user", "deny": SEND_MESSAGES})
        )
        .await
        .status,
        204
    );
    app.post_as(
        &r.member.token,
        &format!("/channels/{c}/messages"),
        &json!({"content": "x"}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.post_as(
        &r.member.token,
        &format!("/channels/{c}/typing"),
        &json!({}),
    )
    .await
    .assert_error(403, "Forbidden");
    assert_eq!(
        app.get_as(&r.member.token, &format!("/channels/{c}/messages"))
            .await
            .status,
        200
    );
    // No history: the channel is visible, its past is not.
    assert_eq!(
        app.put_as(
            &r.owner.token,
            &ow(&r.member.id),
            &json!({"targetType": "user", "deny": READ_MESSAGE_HISTORY})
        )
        .await
        .status,
        204
    );
    app.get_as(&r.member.token, &format!("/channels/{c}/messages"))
        .await
        .assert_error(403, "Forbidden");
    // Hidden: gone entirely.
    assert_eq!(
        app.put_as(
            &r.owner.token,
            &ow(&r.member.id),
            &json!({"targetType": "user", "deny": VIEW_CHANNELS})
        )
        .await
        .status,
        204
    );
    app.get_as(&r.member.token, &format!("/channels/{c}/messages"))
        .await
        .assert_error(404, "Not Found");
    app.post_as(
        &r.member.token,
        &format!("/channels/{c}/messages"),
        &json!({"content": "x"}),
    )
    .await
    .assert_error(404, "Not Found");
}

async fn slowmode_holds_even_with_rate_limits_off(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "slow").await;
    assert_eq!(
        app.patch_as(
            &r.owner.token,
            &format!("/channels/{}", r.channel),
            &json!({"rateLimitPerUser": 30})
        )
        .await
        .status,
        200
    );
    say(&app, &r.member, &r.channel, "one").await;
    let second = app
        .post_as(
            &r.member.token,
            &format!("/channels/{}/messages", r.channel),
            &json!({"content": "two"}),
        )
        .await;
    second.assert_error(429, "Too Many Requests");
    let retry: u64 = second
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((29..=30).contains(&retry), "{retry}");
    // Moderators and the owner are exempt.
    say(&app, &r.owner, &r.channel, "owner one").await;
    say(&app, &r.owner, &r.channel, "owner two").await;
}

/// A node keeps a slowmode post in memory only while its slowmode lasts, so memory stays
/// bounded however many people post; the poster may then post again, and a slowmode
/// lengthened afterwards still counts the forgotten post (the database answers for it).
async fn slowmode_posts_are_forgotten_once_past_yet_still_count(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let app = TestAppBuilder::new(backend)
        .clock(clock.clone())
        .spawn()
        .await;
    let r = room(&app, "slowprune").await;
    let set_slowmode = |secs: u64| {
        let (app, r) = (&app, &r);
        async move {
            let res = app
                .patch_as(
                    &r.owner.token,
                    &format!("/channels/{}", r.channel),
                    &json!({"rateLimitPerUser": secs}),
                )
                .await;
            assert_eq!(res.status, 200, "{}", res.text);
        }
    };
    let path = format!("/channels/{}/messages", r.channel);
    let body = json!({"content": "again"});
    let post = || app.post_as(&r.member.token, &path, &body);
    set_slowmode(30).await;
    say(&app, &r.member, &r.channel, "first").await;
    post().await.assert_error(429, "Too Many Requests");
    assert_eq!(app.state.core.activity.held().1, 1, "the post is held");

    // Past the 30 s, the node's housekeeping forgets the post.
    clock.advance_millis(31_000);
    wait_until(|| async { app.state.core.activity.held().1 == 0 }).await;

    // An hour of slowmode now: the post made 31 s ago still counts.
    set_slowmode(3600).await;
    let refused = post().await;
    refused.assert_error(429, "Too Many Requests");
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((3568..=3570).contains(&retry), "{retry}");

    // Back to 30 s, which have passed: the member posts.
    set_slowmode(30).await;
    assert_eq!(post().await.status, 201);
}

#[tokio::test]
async fn message_rate_limits_apply_per_user() {
    let app = TestAppBuilder::new(Backend::Sqlite)
        .configure(|c| {
            c.rate_limits = true;
            c.rate_limit_overrides.insert(
                xcord_core::ratelimit::Tier::MessageSend,
                xcord_core::ratelimit::Limit {
                    max: 3,
                    window_secs: 10,
                },
            );
        })
        .spawn()
        .await;
    let r = room(&app, "rl").await;
    for left in ["2", "1", "0"] {
        let res = app
            .post_as(
                &r.member.token,
                &format!("/channels/{}/messages", r.channel),
                &json!({"content": "hi"}),
            )
            .await;
        assert_eq!(
            (res.status, res.header("x-ratelimit-remaining")),
            (201, Some(left)),
            "{}",
            res.text
        );
        assert_eq!(
            res.header("x-ratelimit-limit"),
            Some("3"),
            "the message tier's headers win"
        );
    }
    app.post_as(
        &r.member.token,
        &format!("/channels/{}/messages", r.channel),
        &json!({"content": "hi"}),
    )
    .await
    .assert_error(429, "Too Many Requests");
    assert_eq!(
        app.post_as(
            &r.owner.token,
            &format!("/channels/{}/messages", r.channel),
            &json!({"content": "hi"})
        )
        .await
        .status,
        201
    );
}

async fn reactions_count_and_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "react").await;
    let m = say(&app, &r.owner, &r.channel, "react to me").await;
    let base = format!(
        "/channels/{}/messages/{}/reactions",
        r.channel,
        string_at(&m, "/id")
    );
    let thumbs = "%F0%9F%91%8D"; // 👍
    assert_eq!(
        app.put_as(&r.owner.token, &format!("{base}/{thumbs}"), &json!({}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.post_as(&r.member.token, &format!("{base}/{thumbs}"), &json!({}))
            .await
            .status,
        204,
        "POST as seed 000 writes it"
    );
    assert_eq!(
        app.put_as(&r.member.token, &format!("{base}/{thumbs}"), &json!({}))
            .await
            .status,
        204,
        "repeating is harmless"
    );
    assert_eq!(
        app.put_as(&r.member.token, &format!("{base}/party:123"), &json!({}))
            .await
            .status,
        204
    );
    let got = app
        .get_as(
            &r.member.token,
            &format!("/channels/{}/messages/{}", r.channel, string_at(&m, "/id")),
        )
        .await;
    assert_eq!(
        got.body["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "party:123", "count": 1, "me": true}])
    );
    let users = app
        .get_as(&r.owner.token, &format!("{base}/{thumbs}"))
        .await;
    let names: Vec<&str> = users.body["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(
        app.delete_as(&r.member.token, &format!("{base}/{thumbs}"))
            .await
            .status,
        204
    );
    let after = app
        .get_as(
            &r.owner.token,
            &format!("/channels/{}/messages/{}", r.channel, string_at(&m, "/id")),
        )
        .await;
    assert_eq!(
        after.body["reactions"][0],
        json!({"emoji": "👍", "count": 1, "me": true})
    );
    app.put_as(&r.member.token, &format!("{base}/a%20b"), &json!({}))
        .await
        .assert_error(422, "Validation Error");
    // Without ADD_REACTIONS one may join an existing reaction but not start a new one.
    let c = &r.channel;
    assert_eq!(
        app.put_as(
            &r.owner.token,
            &format!("/channels/{c}/permissions/{}", r.member.id),
            &json!({"targetType": "user", "deny": ADD_REACTIONS})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.put_as(&r.member.token, &format!("{base}/{thumbs}"), &json!({}))
            .await
            .status,
        204
    );
    app.put_as(&r.member.token, &format!("{base}/new"), &json!({}))
        .await
        .assert_error(403, "Forbidden");
    app.put_as(
        &r.member.token,
        &format!("/channels/{c}/messages/123/reactions/{thumbs}"),
        &json!({}),
    )
    .await
    .assert_error(404, "Not Found");
}

async fn pins_need_manage_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "pin").await;
    let m = say(&app, &r.member, &r.channel, "pin me").await;
    let mid = string_at(&m, "/id");
    let path = format!("/channels/{}/pins/{mid}", r.channel);
    app.put_as(&r.member.token, &path, &json!({}))
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        app.put_as(&r.owner.token, &path, &json!({})).await.status,
        204
    );
    let pins = app
        .get_as(&r.member.token, &format!("/channels/{}/pins", r.channel))
        .await;
    assert_eq!(msg_ids(&pins.body), vec![mid.to_owned()]);
    assert_eq!(pins.body["messages"][0]["pinned"], true);
    app.put_as(
        &r.owner.token,
        &format!("/channels/{}/pins/123", r.channel),
        &json!({}),
    )
    .await
    .assert_error(404, "Not Found");
    assert_eq!(app.delete_as(&r.owner.token, &path).await.status, 204);
    assert!(
        msg_ids(
            &app.get_as(&r.member.token, &format!("/channels/{}/pins", r.channel))
                .await
                .body
        )
        .is_empty()
    );
}

async fn attachments_are_sniffed_signed_and_ranged(backend: Backend) {
    use xcord_core::{Clock as _, ManualClock};
    let clock = ManualClock::new(xcord_types::Timestamp::now());
    let app = TestAppBuilder::new(backend)
        .clock(Arc::new(clock.clone()))
        .configure(|c| c.attachment_max_bytes = 64 * 1024)
        .spawn()
        .await;
    let r = room(&app, "att").await;
    let upload = |token: String, bytes: Vec<u8>, name: &'static str, mime: &'static str| {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str(mime)
            .expect("mime");
        let req = app
            .client
            .post(app.url(&format!("/api/v1/channels/{}/attachments", r.channel)))
            .bearer_auth(token)
            .multipart(reqwest::multipart::Form::new().part("file", part));
        async move { TestApp::read(req.send().await.expect("upload")).await }
    };
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(7, 3)
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let png = png.into_inner();
    // Declared as text: the bytes say PNG.
    let up = upload(
        r.member.token.clone(),
        png.clone(),
        "../../pic.txt",
        "text/plain",
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.text);
    assert_eq!(
        (
            up.body["contentType"].as_str(),
            up.body["width"].as_i64(),
            up.body["height"].as_i64(),
            up.body["filename"].as_str()
        ),
        (Some("image/png"), Some(7), Some(3), Some("pic.txt"))
    );
    let too_big = upload(
        r.member.token.clone(),
        vec![b'a'; 64 * 1024 + 1],
        "big.txt",
        "text/plain",
    )
    .await;
    too_big.assert_error(413, "Payload Too Large");
    let msg = app
        .post_as(
            &r.member.token,
            &format!("/channels/{}/messages", r.channel),
            &json!({"content": "", "attachmentIds": [up.body["id"]]}),
        )
        .await;
    assert_eq!(
        msg.status, 201,
        "a message may be just a file: {}",
        msg.text
    );
    let url = msg.str_at("/attachments/0/url");
    assert!(
        url.starts_with(&format!("/cdn/attachments/{}/", up.str_at("/id"))) && url.contains("sig="),
        "{url}"
    );
    // No Authorization header needed: the link is the credential.
    let full = app.client.get(app.url(&url)).send().await.expect("get");
    assert_eq!(full.status().as_u16(), 200);
    assert_eq!(full.headers()["content-type"], "image/png");
    assert_eq!(
        full.headers()["content-length"],
        png.len().to_string().as_str()
    );
    assert_eq!(full.bytes().await.expect("body").to_vec(), png);
    let part = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=1-3")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1-3/{}", png.len()).as_str()
    );
    assert_eq!(
        part.bytes().await.expect("body").to_vec(),
        png[1..4].to_vec()
    );
    assert_eq!(
        app.client
            .get(app.url(&url))
            .header("range", "bytes=9999-")
            .send()
            .await
            .expect("range")
            .status()
            .as_u16(),
        416
    );
    // Tampered or expired links are refused.
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(app.get(&tampered).await.status, 403);
    let no_sig = url.split('?').next().unwrap_or_default().to_owned();
    assert_eq!(app.get(&no_sig).await.status, 403);
    clock.advance_millis(24 * 3600 * 1000 + 1000);
    assert!(clock.now().as_millis() > 0);
    assert_eq!(app.get(&url).await.status, 403);
    // History hands out fresh links (the day that passed also ended the access tokens).
    let member = app.login("att_member", "Secret123").await;
    let owner = app.login("att_owner", "Secret123").await;
    let fresh = app
        .get_as(
            &member.token,
            &format!("/channels/{}/messages?limit=1", r.channel),
        )
        .await
        .str_at("/messages/0/attachments/0/url");
    assert!(fresh.contains("sig="), "{fresh}");
    assert_eq!(app.get(&fresh).await.status, 200);
    // Someone else's upload, or a used one, cannot be attached.
    let other = upload(
        owner.token.clone(),
        b"notes".to_vec(),
        "n.txt",
        "text/plain",
    )
    .await;
    assert_eq!(other.body["contentType"], "text/plain; charset=utf-8");
    app.post_as(
        &member.token,
        &format!("/channels/{}/messages", r.channel),
        &json!({"content": "x", "attachmentIds": [other.body["id"]]}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_as(
        &member.token,
        &format!("/channels/{}/messages", r.channel),
        &json!({"content": "x", "attachmentIds": [up.body["id"]]}),
    )
    .await
    .assert_error(422, "Validation Error");
    let nothing = app
        .client
        .post(app.url(&format!("/api/v1/channels/{}/attachments", r.channel)))
        .bearer_auth(&member.token)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(nothing.status().as_u16(), 415);
    // Deleting the channel removes the stored files as well as the rows.
    let stored = app.data_dir().join("attachments").join(&r.channel);
    assert!(
        std::fs::read_dir(&stored).map(|d| d.count()).unwrap_or(0) >= 2,
        "uploads are on disk"
    );
    assert_eq!(
        app.delete_as(&owner.token, &format!("/channels/{}", r.channel))
            .await
            .status,
        204
    );
    let mut emptied = false;
    for _ in 0..50 {
        if std::fs::read_dir(&stored).map(|d| d.count()).unwrap_or(0) == 0 {
            emptied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(emptied, "attachment files outlived their channel");
}

async fn search_finds_only_readable_live_plain_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "search").await;
    let secret = app
        .post_as(
            &r.owner.token,
            &format!("/servers/{}/channels", r.server),
            &json!({"name": "secret"}),
        )
        .await
        .str_at("/id");
    assert_eq!(
        app.put_as(
            &r.owner.token,
            &format!("/channels/{secret}/permissions/{}", r.server),
            &json!({"targetType": "role", "deny": VIEW_CHANNELS})
        )
        .await
        .status,
        204
    );
    say(&app, &r.owner, &r.channel, "the quick brown fox").await;
    say(&app, &r.member, &r.channel, "a lazy dog and a FOX").await;
    say(&app, &r.owner, &secret, "fox secrets").await;
    let gone = say(&app, &r.owner, &r.channel, "fox to delete").await;
    let edited = say(&app, &r.owner, &r.channel, "fox before edit").await;
    app.delete_as(
        &r.owner.token,
        &format!(
            "/channels/{}/messages/{}",
            r.channel,
            string_at(&gone, "/id")
        ),
    )
    .await;
    app.patch_as(
        &r.owner.token,
        &format!(
            "/channels/{}/messages/{}",
            r.channel,
            string_at(&edited, "/id")
        ),
        &json!({"content": "wolf after edit"}),
    )
    .await;
    let server_search = |who: &TestUser, q: &str| {
        let path = format!("/servers/{}/messages/search?{q}", r.server);
        let t = who.token.clone();
        let app = &app;
        async move { contents(&app.get_as(&t, &path).await.body) }
    };
    assert_eq!(
        server_search(&r.member, "q=fox").await,
        vec!["a lazy dog and a FOX", "the quick brown fox"],
        "hidden, deleted and edited-away messages never match"
    );
    assert_eq!(
        server_search(&r.owner, "q=fox").await.len(),
        3,
        "the owner reads the secret channel"
    );
    assert_eq!(
        server_search(&r.member, "q=wolf").await,
        vec!["wolf after edit"]
    );
    assert!(server_search(&r.member, "q=before").await.is_empty());
    assert_eq!(
        server_search(&r.member, &format!("q=fox&authorId={}", r.member.id)).await,
        vec!["a lazy dog and a FOX"]
    );
    assert_eq!(
        server_search(&r.member, "q=quick%20fox").await,
        vec!["the quick brown fox"],
        "all words must appear"
    );
    assert_eq!(
        server_search(&r.member, "q=%22fox%22%20OR%20*").await.len(),
        0,
        "operators are taken literally"
    );
    let one = app
        .get_as(
            &r.member.token,
            &format!("/channels/{}/messages/search?q=lazy", r.channel),
        )
        .await;
    assert_eq!(contents(&one.body), vec!["a lazy dog and a FOX"]);
    app.get_as(
        &r.member.token,
        &format!("/channels/{secret}/messages/search?q=fox"),
    )
    .await
    .assert_error(404, "Not Found");
    app.get_as(
        &r.member.token,
        &format!("/servers/{}/messages/search", r.server),
    )
    .await
    .assert_error(422, "Validation Error");
    let outsider = app.register("search_out").await;
    app.get_as(
        &outsider.token,
        &format!("/servers/{}/messages/search?q=fox", r.server),
    )
    .await
    .assert_error(404, "Not Found");
}

async fn read_states_count_unread_and_mentions(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "read").await;
    let first = say(&app, &r.owner, &r.channel, "one").await;
    assert_eq!(
        app.post_as(
            &r.member.token,
            &format!(
                "/channels/{}/messages/{}/ack",
                r.channel,
                string_at(&first, "/id")
            ),
            &json!({})
        )
        .await
        .status,
        204
    );
    say(&app, &r.owner, &r.channel, "two").await;
    say(
        &app,
        &r.owner,
        &r.channel,
        &format!("three <@{}>", r.member.id),
    )
    .await;
    say(&app, &r.owner, &r.channel, "@everyone four").await;
    say(&app, &r.member, &r.channel, "my own message does not count").await;
    let states = app.get_as(&r.member.token, "/users/@me/read-states").await;
    assert_eq!(states.status, 200, "{}", states.text);
    let s = &states.body["readStates"][0];
    assert_eq!(
        (
            s["channelId"].as_str(),
            s["lastReadMessageId"].clone(),
            s["unreadCount"].as_i64(),
            s["mentionCount"].as_i64()
        ),
        (
            Some(r.channel.as_str()),
            first["id"].clone(),
            Some(3),
            Some(2)
        )
    );
    app.post_as(
        &r.member.token,
        &format!("/channels/{}/messages/999/ack", r.channel),
        &json!({}),
    )
    .await
    .assert_error(404, "Not Found");
    assert_eq!(
        app.get_as(&r.owner.token, "/users/@me/read-states")
            .await
            .body["readStates"],
        json!([])
    );
}

async fn direct_messages_and_encrypted_payloads(backend: Backend) {
    use xcord_bus::{Topic, TopicFilter};
    let app = spawn_app(backend).await;
    let a = app.register("dm_a").await;
    let b = app.register("dm_b").await;
    let c = app.register("dm_c").await;
    let dm = app
        .post_as(
            &a.token,
            "/users/@me/dm-channels",
            &json!({"recipientId": b.id}),
        )
        .await
        .str_at("/id");
    let plain = say(&app, &a, &dm, "hi b").await;
    assert!(plain.get("serverId").is_none());
    let keys = json!({a.id.clone(): "k-for-a==", b.id.clone(): "k-for-b=="});
    let cipher = "U2FsdGVkX1+abc/def==\n";
    let enc = app
        .post_as(
            &a.token,
            &format!("/channels/{dm}/messages"),
            &json!({"content": cipher, "encrypted": true, "encryptedKeys": keys}),
        )
        .await;
    assert_eq!(enc.status, 201, "{}", enc.text);
    let got = app
        .get_as(&b.token, &format!("/channels/{dm}/messages?limit=1"))
        .await;
    let m = &got.body["messages"][0];
    assert_eq!(
        (
            m["content"].as_str(),
            m["encrypted"].as_bool(),
            m["encryptedKeys"].clone()
        ),
        (Some(cipher), Some(true), keys),
        "stored and returned exactly"
    );
    assert!(
        contents(
            &app.get_as(
                &b.token,
                &format!("/channels/{dm}/messages/search?q=U2FsdGVkX1")
            )
            .await
            .body
        )
        .is_empty(),
        "never searchable"
    );
    app.get_as(&c.token, &format!("/channels/{dm}/messages"))
        .await
        .assert_error(404, "Not Found");
    app.post_as(
        &c.token,
        &format!("/channels/{dm}/messages"),
        &json!({"content": "x"}),
    )
    .await
    .assert_error(404, "Not Found");
    // E2E is for DMs only.
    let srv = app
        .post_as(&a.token, "/servers", &json!({"name": "Plain"}))
        .await
        .str_at("/channels/0/id");
    app.post_as(
        &a.token,
        &format!("/channels/{srv}/messages"),
        &json!({"content": "x", "encrypted": true}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_as(
        &a.token,
        &format!("/channels/{dm}/messages"),
        &json!({"content": "x", "encryptedKeys": {"1": "k"}}),
    )
    .await
    .assert_error(422, "Validation Error");
    // Read receipts reach the other side of a DM.
    let mut sub = app.state.core.bus.subscribe(TopicFilter::All);
    assert_eq!(
        app.post_as(
            &b.token,
            &format!("/channels/{dm}/messages/{}/ack", string_at(&plain, "/id")),
            &json!({})
        )
        .await
        .status,
        204
    );
    let ev = tokio::time::timeout(std::time::Duration::from_secs(2), sub.recv())
        .await
        .expect("event")
        .expect("bus");
    assert_eq!(
        (ev.name, ev.topic),
        ("MESSAGE_ACK", Topic::Channel(dm.parse().expect("id")))
    );
    let data: Value = serde_json::from_str(&ev.data).expect("json");
    assert_eq!(
        (data["userId"].as_str(), data["messageId"].clone()),
        (Some(b.id.as_str()), plain["id"].clone())
    );
    // Any member of a DM may pin.
    assert_eq!(
        app.put_as(
            &b.token,
            &format!("/channels/{dm}/pins/{}", string_at(&plain, "/id")),
            &json!({})
        )
        .await
        .status,
        204
    );
    // A block stops the DM both ways.
    app.put_as(
        &b.token,
        &format!("/users/@me/relationships/{}", a.id),
        &json!({"type": "block"}),
    )
    .await;
    app.post_as(
        &a.token,
        &format!("/channels/{dm}/messages"),
        &json!({"content": "still there?"}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.post_as(
        &b.token,
        &format!("/channels/{dm}/messages"),
        &json!({"content": "no"}),
    )
    .await
    .assert_error(403, "Forbidden");
}

async fn message_events_carry_full_objects(backend: Backend) {
    use xcord_bus::{Topic, TopicFilter};
    let app = spawn_app(backend).await;
    let r = room(&app, "ev").await;
    let mut sub = app.state.core.bus.subscribe(TopicFilter::All);
    let c = r.channel.clone();
    assert_eq!(
        app.post_as(
            &r.member.token,
            &format!("/channels/{c}/typing"),
            &json!({})
        )
        .await
        .status,
        204
    );
    let m = say(&app, &r.member, &c, "event me").await;
    let mid = string_at(&m, "/id");
    app.patch_as(
        &r.member.token,
        &format!("/channels/{c}/messages/{mid}"),
        &json!({"content": "edited"}),
    )
    .await;
    app.put_as(
        &r.owner.token,
        &format!("/channels/{c}/messages/{mid}/reactions/ok"),
        &json!({}),
    )
    .await;
    app.put_as(
        &r.owner.token,
        &format!("/channels/{c}/pins/{mid}"),
        &json!({}),
    )
    .await;
    app.delete_as(&r.member.token, &format!("/channels/{c}/messages/{mid}"))
        .await;
    let topic = Topic::Channel(c.parse().expect("id"));
    let mut seen: Vec<(String, Value)> = Vec::new();
    while let Ok(Ok(ev)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), sub.recv()).await
    {
        if ev.topic == topic {
            seen.push((
                ev.name.to_string(),
                serde_json::from_str(&ev.data).expect("json"),
            ));
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "TYPING_START",
            "MESSAGE_CREATE",
            "TYPING_STOP",
            "MESSAGE_UPDATE",
            "MESSAGE_REACTION_ADD",
            "CHANNEL_PINS_UPDATE",
            "MESSAGE_DELETE"
        ]
    );
    assert_eq!(
        seen[1].1, m,
        "MESSAGE_CREATE carries the same object the poster got"
    );
    assert_eq!(seen[3].1["content"], "edited");
    assert_eq!(seen[4].1["emoji"], "ok");
    assert_eq!(
        seen[6].1,
        json!({"id": mid, "channelId": c, "serverId": r.server})
    );
}
