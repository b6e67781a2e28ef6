//! Scheduled and automatic messages (SPEC §6) through the real job queue, with a manual
//! clock: the test moves time, the node's workers wake and post.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use xcord_core::{Clock as _, ManualClock};
use xcord_permissions::bits::SEND_MESSAGES;
use xcord_testkit::{
    Backend, TestApp, TestAppBuilder, TestUser, on_both_backends, room, wait_until,
};
use xcord_types::Timestamp;

on_both_backends!(
    a_scheduled_message_is_posted_once_at_its_time,
    edits_move_it_and_cancelling_stops_it,
    bad_times_limits_and_strangers_are_refused,
    losing_permission_makes_it_fail_with_a_reason,
    a_message_scheduled_in_a_dm_reaches_the_other_side,
    automatic_messages_pair_users_skip_blocks_and_arrive_marked,
    a_post_left_unrecorded_by_a_crash_is_found_and_not_repeated,
);

const QUIET: Duration = Duration::from_millis(400);

async fn app_with_clock(backend: Backend) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let app = TestAppBuilder::new(backend)
        .clock(clock.clone())
        .spawn()
        .await;
    (app, clock)
}

fn at(clock: &ManualClock, secs_from_now: i64) -> String {
    Timestamp::from_millis(clock.now().as_millis() + secs_from_now * 1000).to_rfc3339()
}

async fn schedule(app: &TestApp, who: &TestUser, channel: &str, body: Value) -> Value {
    let res = app
        .post_as(
            &who.token,
            &format!("/channels/{channel}/scheduled-messages"),
            &body,
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn history(app: &TestApp, who: &TestUser, channel: &str) -> Vec<Value> {
    let res = app
        .get_as(&who.token, &format!("/channels/{channel}/messages"))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body["messages"].as_array().cloned().unwrap_or_default()
}

async fn status_of(app: &TestApp, who: &TestUser, channel: &str, id: &str) -> Value {
    let res = app
        .get_as(
            &who.token,
            &format!("/channels/{channel}/scheduled-messages/{id}"),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body
}

async fn a_scheduled_message_is_posted_once_at_its_time(backend: Backend) {
    let (app, clock) = app_with_clock(backend).await;
    let r = room(&app, "sched").await;
    let (mut author, _) = app.gateway_as(&r.owner).await;
    let (mut reader, _) = app.gateway_as(&r.member).await;
    let send_at = at(&clock, 60);
    let s = schedule(
        &app,
        &r.owner,
        &r.channel,
        json!({"content": "good morning", "sendAt": send_at}),
    )
    .await;
    let id = s["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s["status"], "scheduled");
    assert_eq!(s["channelId"], r.channel.as_str());
    assert_eq!(s["authorId"], r.owner.id.as_str());
    assert_eq!(s["content"], "good morning");
    assert!(
        s["messageId"].is_null() && s["failureReason"].is_null(),
        "{s}"
    );
    assert!(s["createdAt"].is_string());
    assert_eq!(
        Timestamp::parse_rfc3339(s["sendAt"].as_str().unwrap_or_default()),
        Timestamp::parse_rfc3339(&send_at)
    );
    assert_eq!(
        author.dispatch("SCHEDULED_MESSAGE_UPDATE").await["status"],
        "scheduled"
    );
    let listed = app
        .get_as(
            &r.owner.token,
            &format!("/channels/{}/scheduled-messages", r.channel),
        )
        .await;
    assert_eq!(listed.body["scheduledMessages"][0]["id"], id.as_str());
    // Others see nothing of it.
    let theirs = app
        .get_as(
            &r.member.token,
            &format!("/channels/{}/scheduled-messages", r.channel),
        )
        .await;
    assert_eq!(theirs.body["scheduledMessages"], json!([]));

    // Not before its time.
    clock.advance_millis(30_000);
    reader.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;

    // At its time: posted as an ordinary message by its author.
    clock.advance_millis(31_000);
    let posted = reader.dispatch("MESSAGE_CREATE").await;
    assert_eq!(posted["content"], "good morning");
    assert_eq!(posted["author"]["id"], r.owner.id.as_str());
    assert_eq!(posted["isAutomatic"], false);
    let update = author.dispatch("SCHEDULED_MESSAGE_UPDATE").await;
    assert_eq!(update["status"], "sent", "{update}");
    assert_eq!(update["messageId"], posted["id"]);
    let now = status_of(&app, &r.owner, &r.channel, &id).await;
    assert_eq!(now["status"], "sent");
    assert_eq!(now["messageId"], posted["id"]);

    // Once, however long the workers keep looking.
    clock.advance_millis(120_000);
    reader.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    let msgs = history(&app, &r.member, &r.channel).await;
    let copies = msgs
        .iter()
        .filter(|m| m["content"] == "good morning")
        .count();
    assert_eq!(copies, 1);

    // A sent one can be neither edited nor cancelled; the list of waiting ones is empty.
    let path = format!("/channels/{}/scheduled-messages/{id}", r.channel);
    app.patch_as(&r.owner.token, &path, &json!({"content": "late edit"}))
        .await
        .assert_error(409, "Conflict");
    app.delete_as(&r.owner.token, &path)
        .await
        .assert_error(409, "Conflict");
    let mine = app
        .get_as(&r.owner.token, "/users/@me/scheduled-messages?status=sent")
        .await;
    assert_eq!(mine.body["scheduledMessages"][0]["id"], id.as_str());
    let waiting = app
        .get_as(
            &r.owner.token,
            &format!("/channels/{}/scheduled-messages", r.channel),
        )
        .await;
    assert_eq!(waiting.body["scheduledMessages"], json!([]));
}

async fn edits_move_it_and_cancelling_stops_it(backend: Backend) {
    let (app, clock) = app_with_clock(backend).await;
    let r = room(&app, "schededit").await;
    let (mut reader, _) = app.gateway_as(&r.member).await;
    let s = schedule(
        &app,
        &r.owner,
        &r.channel,
        json!({"content": "first draft", "sendAt": at(&clock, 60)}),
    )
    .await;
    let path = format!(
        "/channels/{}/scheduled-messages/{}",
        r.channel,
        s["id"].as_str().unwrap_or_default()
    );
    let edited = app
        .patch_as(
            &r.owner.token,
            &path,
            &json!({"content": "final text", "sendAt": at(&clock, 300)}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["content"], "final text");
    assert_eq!(edited.body["status"], "scheduled");

    // Past the old time: nothing; past the new one: the edited text.
    clock.advance_millis(120_000);
    reader.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    clock.advance_millis(200_000);
    assert_eq!(
        reader.dispatch("MESSAGE_CREATE").await["content"],
        "final text"
    );

    // Cancelled: never posted; a second cancel is a conflict; a stranger sees nothing.
    let c = schedule(
        &app,
        &r.owner,
        &r.channel,
        json!({"content": "never", "sendAt": at(&clock, 60)}),
    )
    .await;
    let cpath = format!(
        "/channels/{}/scheduled-messages/{}",
        r.channel,
        c["id"].as_str().unwrap_or_default()
    );
    app.get_as(&r.member.token, &cpath)
        .await
        .assert_error(404, "Not Found");
    app.delete_as(&r.member.token, &cpath)
        .await
        .assert_error(404, "Not Found");
    app.delete_as(&r.owner.token, &cpath)
        .await
        .expect_status(204, "cancel");
    assert_eq!(status_of_path(&app, &r.owner, &cpath).await, "cancelled");
    clock.advance_millis(120_000);
    reader.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    app.delete_as(&r.owner.token, &cpath)
        .await
        .assert_error(409, "Conflict");
    assert!(
        !history(&app, &r.owner, &r.channel)
            .await
            .iter()
            .any(|m| m["content"] == "never")
    );
}

async fn status_of_path(app: &TestApp, who: &TestUser, path: &str) -> String {
    let res = app.get_as(&who.token, path).await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body["status"].as_str().unwrap_or_default().to_owned()
}

async fn bad_times_limits_and_strangers_are_refused(backend: Backend) {
    let (app, clock) = app_with_clock(backend).await;
    let r = room(&app, "schedbad").await;
    let path = format!("/channels/{}/scheduled-messages", r.channel);
    let field_of = |body: &Value| body["details"][0]["field"].as_str().map(str::to_owned);
    for (body, field) in [
        (json!({"content": "x", "sendAt": at(&clock, -5)}), "sendAt"),
        (
            json!({"content": "x", "sendAt": at(&clock, 121 * 24 * 3600)}),
            "sendAt",
        ),
        (json!({"content": "x", "sendAt": "tomorrow"}), "sendAt"),
        (json!({"content": "x"}), "sendAt"),
        (json!({"content": "", "sendAt": at(&clock, 60)}), "content"),
        (
            json!({"content": "y".repeat(2001), "sendAt": at(&clock, 60)}),
            "content",
        ),
    ] {
        let res = app.post_as(&r.owner.token, &path, &body).await;
        res.assert_error(422, "Validation Error");
        assert_eq!(field_of(&res.body).as_deref(), Some(field), "{}", res.text);
    }
    // Exactly 120 days ahead is accepted.
    schedule(
        &app,
        &r.owner,
        &r.channel,
        json!({"content": "far", "sendAt": at(&clock, 120 * 24 * 3600)}),
    )
    .await;
    // Not a member: the channel does not exist for them.
    let stranger = app.register("schedbad_stranger").await;
    app.post_as(
        &stranger.token,
        &path,
        &json!({"content": "x", "sendAt": at(&clock, 60)}),
    )
    .await
    .assert_error(404, "Not Found");
    // No SEND_MESSAGES: 403.
    app.put_as(
        &r.owner.token,
        &format!("/channels/{}/permissions/{}", r.channel, r.member.id),
        &json!({"targetType": "user", "deny": SEND_MESSAGES}),
    )
    .await
    .expect_status(204, "deny SEND_MESSAGES");
    app.post_as(
        &r.member.token,
        &path,
        &json!({"content": "x", "sendAt": at(&clock, 60)}),
    )
    .await
    .assert_error(403, "Forbidden");
    // At most 100 waiting per user (one is waiting already).
    for n in 0..99 {
        schedule(
            &app,
            &r.owner,
            &r.channel,
            json!({"content": format!("n{n}"), "sendAt": at(&clock, 600 + n)}),
        )
        .await;
    }
    let over = app
        .post_as(
            &r.owner.token,
            &path,
            &json!({"content": "one too many", "sendAt": at(&clock, 60)}),
        )
        .await;
    over.assert_error(422, "Validation Error");
    assert!(over.text.contains("100"), "{}", over.text);
    app.get_as(&r.owner.token, "/users/@me/scheduled-messages?status=soon")
        .await
        .assert_error(422, "Validation Error");
    let all = app
        .get_as(&r.owner.token, "/users/@me/scheduled-messages")
        .await;
    assert_eq!(
        all.body["scheduledMessages"].as_array().map_or(0, Vec::len),
        100
    );
}

async fn losing_permission_makes_it_fail_with_a_reason(backend: Backend) {
    let (app, clock) = app_with_clock(backend).await;
    let r = room(&app, "schedlost").await;
    let (mut author, _) = app.gateway_as(&r.member).await;
    let (mut owner, _) = app.gateway_as(&r.owner).await;
    let s = schedule(
        &app,
        &r.member,
        &r.channel,
        json!({"content": "from the member", "sendAt": at(&clock, 60)}),
    )
    .await;
    author.dispatch("SCHEDULED_MESSAGE_UPDATE").await;
    app.put_as(
        &r.owner.token,
        &format!("/channels/{}/permissions/{}", r.channel, r.member.id),
        &json!({"targetType": "user", "deny": SEND_MESSAGES}),
    )
    .await
    .expect_status(204, "deny SEND_MESSAGES");
    clock.advance_millis(61_000);
    let update = author.dispatch("SCHEDULED_MESSAGE_UPDATE").await;
    assert_eq!(update["status"], "failed", "{update}");
    assert!(
        update["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("send messages")),
        "{update}"
    );
    assert!(update["messageId"].is_null());
    owner.assert_no_dispatch("MESSAGE_CREATE", QUIET).await;
    let path = format!(
        "/channels/{}/scheduled-messages/{}",
        r.channel,
        s["id"].as_str().unwrap_or_default()
    );
    assert_eq!(status_of_path(&app, &r.member, &path).await, "failed");
    let failed = app
        .get_as(
            &r.member.token,
            "/users/@me/scheduled-messages?status=failed",
        )
        .await;
    assert_eq!(
        failed.body["scheduledMessages"]
            .as_array()
            .map_or(0, Vec::len),
        1
    );
}

async fn a_message_scheduled_in_a_dm_reaches_the_other_side(backend: Backend) {
    let (app, clock) = app_with_clock(backend).await;
    let a = app.register("scheddm_a").await;
    let b = app.register("scheddm_b").await;
    let (mut cb, _) = app.gateway_as(&b).await;
    let dm = app
        .post_as(
            &a.token,
            &format!("/users/{}/dm-channels", a.id),
            &json!({"recipientId": b.id}),
        )
        .await;
    assert!(dm.status < 300, "{}", dm.text);
    let channel = dm.str_at("/id");
    schedule(
        &app,
        &a,
        &channel,
        json!({"content": "see you later", "sendAt": at(&clock, 90)}),
    )
    .await;
    clock.advance_millis(91_000);
    let got = cb.dispatch("MESSAGE_CREATE").await;
    assert_eq!(got["content"], "see you later");
    assert_eq!(got["channelId"], channel.as_str());
}

async fn automatic_messages_pair_users_skip_blocks_and_arrive_marked(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let app = TestAppBuilder::new(backend)
        .clock(clock.clone())
        .spawn()
        .await;
    let core = app.state.core.clone();
    let pool = vec!["hello from the pool".to_owned()];
    // Two users who blocked one another: their only pair is skipped.
    let a = app.register("auto_a").await;
    let b = app.register("auto_b").await;
    app.put_as(
        &a.token,
        &format!("/users/@me/relationships/{}", b.id),
        &json!({"type": "block"}),
    )
    .await
    .expect_status(204, "block");
    let tick = clock.now();
    let plan = core
        .plan_auto_messages(tick, 60, &pool)
        .await
        .expect("planned")
        .expect("this node planned the tick");
    assert_eq!(
        (plan.users, plan.pairs, plan.skipped, plan.planned),
        (2, 1, 1, 0)
    );
    // The same tick is planned once, on whichever node claims it first.
    assert!(
        core.plan_auto_messages(tick, 60, &pool)
            .await
            .expect("ran")
            .is_none()
    );

    // Five users (odd): two pairs, one waits. Four users (even) after unblocking: two pairs.
    let c = app.register("auto_c").await;
    let d = app.register("auto_d").await;
    let e = app.register("auto_e").await;
    let tick2 = Timestamp::from_millis(tick.as_millis() + 1000);
    let plan = core
        .plan_auto_messages(tick2, 60, &pool)
        .await
        .expect("planned")
        .expect("a new tick");
    assert_eq!(plan.users, 5);
    assert_eq!(plan.pairs, 2);
    assert_eq!(plan.planned + plan.skipped, 2);
    app.delete_as(&a.token, &format!("/users/@me/relationships/{}", b.id))
        .await
        .expect_status(204, "unblock");
    let f = app.register("auto_f").await;
    let tick3 = Timestamp::from_millis(tick.as_millis() + 2000);
    let plan3 = core
        .plan_auto_messages(tick3, 60, &pool)
        .await
        .expect("planned")
        .expect("a new tick");
    assert_eq!((plan3.users, plan3.pairs, plan3.skipped), (6, 3, 0));
    assert_eq!(plan3.planned, 3);

    // Within the window every planned message arrives as a DM marked automatic.
    let mut sessions = Vec::new();
    let everyone = [&a, &b, &c, &d, &e, &f];
    for u in everyone {
        sessions.push(app.gateway_as(u).await.0);
    }
    // Past the last plan's window (its messages are due up to 60 s after its tick).
    clock.advance_millis(tick3.as_millis() + 61_000 - clock.now().as_millis());
    let records = core.store.auto_messages_since(tick).await.expect("records");
    let expected = plan.planned + plan3.planned;
    assert_eq!(records.len(), expected);
    let all_sent = || {
        let core = core.clone();
        async move {
            core.store
                .auto_messages_since(tick)
                .await
                .is_ok_and(|r| r.iter().all(|a| a.is_sent))
        }
    };
    let sent_within_ten_seconds = || async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_sent().await {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    };
    let queue = || async {
        let jobs = core
            .store
            .jobs(&xcord_store::JobFilter::default())
            .await
            .expect("jobs");
        let records = core.store.auto_messages_since(tick).await.expect("records");
        (jobs, records)
    };
    if !sent_within_ten_seconds().await {
        // A job still waiting must have failed an attempt (its retry is due after a backoff
        // the test's clock has not reached); one never attempted was lost by the workers.
        let (jobs, records) = queue().await;
        let waiting: Vec<_> = jobs
            .iter()
            .filter(|j| {
                j.kind == xcord_core::auto_messages::AUTO_JOB
                    && j.state != xcord_store::JobState::Done
            })
            .collect();
        assert!(
            waiting
                .iter()
                .all(|j| j.attempts >= 1 && j.last_error.is_some()),
            "jobs left unattempted after the clock jumped to {:?}:\n{waiting:#?}\nrecords: {records:#?}",
            clock.now()
        );
        eprintln!("automatic messages retried after failed attempts:\n{waiting:#?}");
        clock.advance_millis(120_000);
        if !sent_within_ten_seconds().await {
            let (jobs, records) = queue().await;
            panic!("automatic messages not sent after their retries:\n{jobs:#?}\n{records:#?}");
        }
    }
    for rec in core.store.auto_messages_since(tick).await.expect("records") {
        assert!(rec.is_queued && rec.is_sent, "{rec:?}");
        assert!(rec.queued_at.is_some() && rec.sent_at.is_some());
        assert_eq!(rec.content, "hello from the pool");
        let msg = core
            .store
            .live_message(rec.message_id.expect("a message"))
            .await
            .expect("read")
            .expect("stored");
        assert!(msg.is_automatic);
        assert_eq!(msg.author_id, rec.sender_id);
    }
    // A receiver's session saw one with isAutomatic: true.
    let first = &core
        .store
        .auto_messages_since(tick3)
        .await
        .expect("records")[0];
    let receiver = everyone
        .iter()
        .position(|u| u.id == first.receiver_id.to_string())
        .expect("the receiver is one of the users");
    let got = sessions[receiver].dispatch("MESSAGE_CREATE").await;
    assert_eq!(got["isAutomatic"], true, "{got}");
    assert_eq!(got["content"], "hello from the pool");
}

/// The crash between posting and recording the post: the message exists under the
/// scheduled message's nonce and the scheduled message is still `sending`. The job's next
/// attempt finds that post instead of making another, and records it.
async fn a_post_left_unrecorded_by_a_crash_is_found_and_not_repeated(backend: Backend) {
    use xcord_core::Caller;
    use xcord_core::scheduled::scheduled_nonce;
    use xcord_store::ScheduledStatus;
    use xcord_types::Snowflake;
    use xcord_types::rest::messages::CreateMessageRequest;

    let (app, clock) = app_with_clock(backend).await;
    let r = room(&app, "schedcrash").await;
    let s = schedule(
        &app,
        &r.owner,
        &r.channel,
        json!({"content": "exactly once", "sendAt": at(&clock, 60)}),
    )
    .await;
    let id: Snowflake = s["id"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("an id");
    let channel: Snowflake = r.channel.parse().expect("a channel id");
    let core = app.state.core.clone();
    // What a worker that died between the two steps leaves behind.
    let author = Caller {
        user_id: r.owner.id.parse().expect("a user id"),
        session_id: Snowflake::from_i64(0),
        expires_at: Timestamp::from_millis(i64::MAX),
    };
    let (first, created) = core
        .post_message(
            &author,
            channel,
            CreateMessageRequest {
                content: Some("exactly once".into()),
                nonce: Some(scheduled_nonce(id)),
                ..CreateMessageRequest::default()
            },
        )
        .await
        .expect("the first post");
    assert!(created);
    let mut tx = core.store.begin_write().await.expect("tx");
    assert!(
        core.store
            .set_scheduled_status(
                &mut tx,
                id,
                &[ScheduledStatus::Scheduled],
                ScheduledStatus::Sending,
                None,
                None,
                clock.now(),
            )
            .await
            .expect("status")
    );
    tx.commit().await.expect("commit");

    clock.advance_millis(61_000);
    let path = format!("/channels/{}/scheduled-messages/{id}", r.channel);
    wait_until(|| {
        let (app, path, token) = (&app, &path, &r.owner.token);
        async move { app.get_as(token, path).await.body["status"] == "sent" }
    })
    .await;
    let done = app.get_as(&r.owner.token, &path).await;
    assert_eq!(done.body["messageId"], first.id.to_string().as_str());
    let copies = history(&app, &r.member, &r.channel)
        .await
        .iter()
        .filter(|m| m["content"] == "exactly once")
        .count();
    assert_eq!(copies, 1);
}
