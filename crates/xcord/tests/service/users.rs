//! Users, settings, search, images, status and presence, relationships, keys and DM
//! channels over HTTP, on both backends.

use serde_json::{Value, json};
use xcord_testkit::{Backend, TestApp, on_both_backends, spawn_app, wait_until};

on_both_backends!(
    public_profiles_never_show_email_and_only_self_may_patch,
    profile_changes_and_their_rules,
    password_change_signs_out_other_devices,
    settings_default_and_merge,
    search_by_prefix_with_limits_and_blocks,
    avatar_and_banner_uploads_are_checked_and_served,
    profile_images_are_replaced_and_earlier_data_directories_still_serve,
    status_and_presence_respect_privacy,
    friends_requests_and_blocks,
    public_keys_are_stored_as_given,
    dm_channels_follow_privacy_and_blocks,
    group_dms,
);

async fn public_profiles_never_show_email_and_only_self_may_patch(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("amy").await;
    let b = app.register("ben").await;
    let p = app.get_as(&a.token, &format!("/users/{}", b.id)).await;
    assert_eq!(
        (p.status, p.body["username"].as_str()),
        (200, Some("ben")),
        "{}",
        p.text
    );
    assert!(
        p.body.get("email").is_none() && !p.text.contains("ben@example.com"),
        "{}",
        p.text
    );
    assert_eq!(
        app.get_as(&a.token, "/users/@me").await.body["email"],
        "amy@example.com"
    );
    app.get_as(&a.token, "/users/123456789")
        .await
        .assert_error(404, "Not Found");
    app.get_as(&a.token, "/users/not-an-id")
        .await
        .assert_error(404, "Not Found");
    app.patch_as(
        &a.token,
        &format!("/users/{}", b.id),
        &json!({"bio": "pwned"}),
    )
    .await
    .assert_error(403, "Forbidden");
    assert_eq!(
        app.get_as(&a.token, &format!("/users/{}", b.id)).await.body["bio"],
        Value::Null
    );
    let own = app
        .patch_as(&a.token, &format!("/users/{}", a.id), &json!({"bio": "hi"}))
        .await;
    assert_eq!((own.status, own.body["bio"].as_str()), (200, Some("hi")));
}

async fn profile_changes_and_their_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("cat").await;
    app.register("dog").await;
    let ok = app
        .patch_as(
            &a.token,
            "/users/@me",
            &json!({"displayName": "Cat", "bio": "meow", "customStatus": "napping"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(
        (
            ok.body["displayName"].as_str(),
            ok.body["bio"].as_str(),
            ok.body["customStatus"].as_str()
        ),
        (Some("Cat"), Some("meow"), Some("napping"))
    );
    // null clears; absent leaves alone.
    let cleared = app
        .patch_as(&a.token, "/users/@me", &json!({"bio": null}))
        .await;
    assert_eq!(
        (
            cleared.body["bio"].clone(),
            cleared.body["displayName"].as_str()
        ),
        (Value::Null, Some("Cat"))
    );
    for (body, field) in [
        (json!({"bio": "x".repeat(191)}), "bio"),
        (json!({"customStatus": "x".repeat(129)}), "customStatus"),
        (json!({"username": "a b"}), "username"),
        (json!({"email": "cat2@example.com"}), "currentPassword"),
        (json!({"newPassword": "weak"}), "newPassword"),
    ] {
        let res = app.patch_as(&a.token, "/users/@me", &body).await;
        res.assert_error(422, "Validation Error");
        assert_eq!(
            res.body["details"][0]["field"], field,
            "{body}: {}",
            res.text
        );
    }
    app.patch_as(&a.token, "/users/@me", &json!({"username": "DOG"}))
        .await
        .assert_error(409, "Conflict");
    app.patch_as(
        &a.token,
        "/users/@me",
        &json!({"email": "dog@example.com", "currentPassword": "Secret123"}),
    )
    .await
    .assert_error(409, "Conflict");
    app.patch_as(
        &a.token,
        "/users/@me",
        &json!({"email": "c2@example.com", "currentPassword": "Wrong1234"}),
    )
    .await
    .assert_error(403, "Forbidden");
    let renamed = app
        .patch_as(&a.token, "/users/@me", &json!({"username": "Kat"}))
        .await;
    assert_eq!(renamed.body["username"], "Kat");
    app.login("kat", "Secret123").await;
    app.patch_as(&a.token, "/users/@me", &json!({"bio": 5}))
        .await
        .assert_error(422, "Validation Error");
    app.patch_as(&a.token, "/users/@me", &json!([1]))
        .await
        .assert_error(400, "Bad Request");
}

async fn password_change_signs_out_other_devices(backend: Backend) {
    let app = spawn_app(backend).await;
    let here = app.register("eve").await;
    let there = app.login("eve", "Secret123").await;
    let res = app
        .patch_as(
            &here.token,
            "/users/@me",
            &json!({"newPassword": "Changed123", "currentPassword": "Secret123"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        app.get_as(&here.token, "/users/@me").await.status,
        200,
        "the current session stays"
    );
    app.get_as(&there.token, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");
    app.login("eve", "Changed123").await;
}

async fn settings_default_and_merge(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("fox").await;
    let s = app.get_as(&a.token, "/users/@me/settings").await;
    assert_eq!(
        s.body,
        json!({"theme": "dark", "language": "en", "notifications": {"email": true, "push": true, "mentionOnly": false},
               "privacy": {"showOnlineStatus": true, "allowDMs": "everyone"}})
    );
    let p = app
        .patch_as(
            &a.token,
            "/users/@me/settings",
            &json!({"theme": "light", "privacy": {"allowDMs": "friends"}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(
        (
            p.body["theme"].as_str(),
            p.body["privacy"]["allowDMs"].as_str()
        ),
        (Some("light"), Some("friends"))
    );
    assert_eq!(
        p.body["privacy"]["showOnlineStatus"], true,
        "untouched fields stay"
    );
    assert_eq!(
        app.get_as(&a.token, "/users/@me/settings").await.body,
        p.body
    );
    app.patch_as(&a.token, "/users/@me/settings", &json!({"theme": "purple"}))
        .await
        .assert_error(422, "Validation Error");
    app.patch_as(
        &a.token,
        "/users/@me/settings",
        &json!({"privacy": {"allowDMs": "sometimes"}}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.patch_as(
        &a.token,
        "/users/@me/settings",
        &json!({"language": "<script>"}),
    )
    .await
    .assert_error(422, "Validation Error");
    assert_eq!(
        app.get_as(&a.token, "/users/@me/settings").await.body,
        p.body,
        "refused patches change nothing"
    );
}

fn names(res: &xcord_testkit::TestResponse) -> Vec<String> {
    res.body["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str().map(str::to_owned))
        .collect()
}

async fn search_by_prefix_with_limits_and_blocks(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.register("searcher").await;
    for n in ["sam", "Samantha", "sa_m", "tom"] {
        app.register(n).await;
    }
    assert_eq!(
        names(&app.get_as(&me.token, "/users/search?q=sam").await),
        vec!["sam", "Samantha"]
    );
    assert_eq!(
        names(&app.get_as(&me.token, "/users/search?q=SA&limit=2").await).len(),
        2
    );
    let hit = app.get_as(&me.token, "/users/search?q=tom").await;
    assert_eq!(
        hit.body["users"][0].as_object().map(|o| {
            let mut k: Vec<_> = o.keys().cloned().collect();
            k.sort();
            k
        }),
        Some(vec![
            "avatar".to_owned(),
            "discriminator".into(),
            "id".into(),
            "username".into()
        ])
    );
    for q in [
        "/users/search",
        "/users/search?q=",
        "/users/search?q=a&limit=0",
        "/users/search?q=a&limit=101",
        "/users/search?q=a&limit=x",
    ] {
        app.get_as(&me.token, q)
            .await
            .assert_error(422, "Validation Error");
    }
    // Someone who blocks the searcher is not found by them.
    let tom = app.login("tom", "Secret123").await;
    assert_eq!(
        app.put_as(
            &tom.token,
            &format!("/users/@me/relationships/{}", me.id),
            &json!({"type": "block"})
        )
        .await
        .status,
        204
    );
    assert!(names(&app.get_as(&me.token, "/users/search?q=tom").await).is_empty());
}

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 20, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

async fn upload(
    app: &TestApp,
    token: &str,
    path: &str,
    field: &str,
    bytes: Vec<u8>,
    mime: &str,
) -> xcord_testkit::TestResponse {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("upload.bin")
        .mime_str(mime)
        .expect("mime");
    let form = reqwest::multipart::Form::new().part(field.to_owned(), part);
    let res = app
        .client
        .post(app.url(&format!("/api/v1{path}")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    TestApp::read(res).await
}

async fn avatar_and_banner_uploads_are_checked_and_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("gina").await;
    let png = png_bytes(64, 48);
    let res = upload(
        &app,
        &a.token,
        "/users/@me/avatar",
        "avatar",
        png.clone(),
        "image/png",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let url = res.str_at("/avatarUrl");
    assert!(
        url.starts_with(&format!("/cdn/avatars/{}/", a.id)) && url.ends_with(".png"),
        "{url}"
    );
    assert_eq!(
        app.get_as(&a.token, "/users/@me").await.body["avatar"],
        url.as_str()
    );
    let served = app.client.get(app.url(&url)).send().await.expect("cdn");
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert!(
        served.headers()["cache-control"]
            .to_str()
            .is_ok_and(|c| c.contains("immutable"))
    );
    let etag = served.headers()["etag"].clone();
    assert_eq!(
        served.bytes().await.expect("body").to_vec(),
        png,
        "served bytes are the upload"
    );
    let again = app
        .client
        .get(app.url(&url))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("cdn");
    assert_eq!(again.status().as_u16(), 304);

    let banner = upload(
        &app,
        &a.token,
        "/users/@me/banner",
        "banner",
        png_bytes(300, 100),
        "image/png",
    )
    .await;
    assert_eq!(banner.status, 200, "{}", banner.text);
    assert!(
        banner.body["bannerUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("/cdn/banners/"))
    );

    // A forged image: PNG magic, then garbage. The declared type does not matter.
    let mut forged = b"\x89PNG\r\n\x1a\n".to_vec();
    forged.extend_from_slice(&[0u8; 512]);
    upload(
        &app,
        &a.token,
        "/users/@me/avatar",
        "avatar",
        forged,
        "image/png",
    )
    .await
    .assert_error(422, "Validation Error");
    upload(
        &app,
        &a.token,
        "/users/@me/avatar",
        "avatar",
        b"just some text".to_vec(),
        "image/png",
    )
    .await
    .assert_error(415, "Unsupported Media Type");
    let mut huge = png_bytes(8, 8);
    huge.resize(5 * 1024 * 1024 + 10, 0);
    upload(
        &app,
        &a.token,
        "/users/@me/avatar",
        "avatar",
        huge,
        "image/png",
    )
    .await
    .assert_error(413, "Payload Too Large");
    let mut too_big_body = png_bytes(8, 8);
    too_big_body.resize(7 * 1024 * 1024, 0);
    upload(
        &app,
        &a.token,
        "/users/@me/avatar",
        "avatar",
        too_big_body,
        "image/png",
    )
    .await
    .assert_error(413, "Payload Too Large");
    app.post_as(&a.token, "/users/@me/avatar", &json!({"avatar": "data"}))
        .await
        .assert_error(415, "Unsupported Media Type");
    // None of the refused uploads replaced the avatar.
    assert_eq!(
        app.get_as(&a.token, "/users/@me").await.body["avatar"],
        url.as_str()
    );
    for bad in [
        "/cdn/../secret_key",
        "/cdn/avatars/%2e%2e/x",
        "/cdn/avatars/none.png",
    ] {
        assert_eq!(app.get(bad).await.status, 404, "{bad}");
    }
}

/// `GET url` on the CDN: the status, the content type and the body's bytes.
async fn fetch(app: &TestApp, url: &str) -> (u16, String, Vec<u8>) {
    let res = app.client.get(app.url(url)).send().await.expect("cdn");
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    (status, kind, res.bytes().await.expect("cdn body").to_vec())
}

async fn profile_images_are_replaced_and_earlier_data_directories_still_serve(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("rhea").await;
    let viewer = app.register("vera").await;
    let profile = format!("/users/{}", a.id);
    // A new avatar replaces the old one: the profile points at it and it is what is served.
    let mut urls = Vec::new();
    for (field, side) in [
        ("avatar", 16),
        ("avatar", 24),
        ("banner", 30),
        ("banner", 40),
    ] {
        let bytes = png_bytes(side, side);
        let res = upload(
            &app,
            &a.token,
            &format!("/users/@me/{field}"),
            field,
            bytes.clone(),
            "image/png",
        )
        .await;
        res.expect_status(200, "upload a profile image");
        let url = res.str_at(&format!("/{field}Url"));
        assert_eq!(
            app.get_as(&viewer.token, &profile).await.body[field],
            url.as_str(),
            "{field}"
        );
        assert_eq!(
            fetch(&app, &url).await,
            (200, "image/png".to_owned(), bytes),
            "{url}"
        );
        // Written where earlier versions wrote it, so going back a version loses nothing.
        let key = url.trim_start_matches("/cdn/");
        assert!(app.data_dir().join("cdn").join(key).is_file(), "{key}");
        urls.push(url);
    }
    assert_ne!(urls[0], urls[1]);
    assert_ne!(urls[2], urls[3]);

    // An avatar stored by an earlier version: written straight into the data directory,
    // with the user's row naming its key, as that version did. It is still served.
    let old = png_bytes(12, 7);
    let key = format!("avatars/{}/00112233445566778899aabbccddeeff.png", a.id);
    let file = app.data_dir().join("cdn").join(&key);
    std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&file, &old).expect("write the old avatar");
    let store = &app.state.core.store;
    let mut tx = store.begin_write().await.expect("begin");
    store
        .set_image(
            &mut tx,
            a.id.parse().expect("a user id"),
            false,
            Some(&key),
            xcord_types::Timestamp::from_millis(1),
        )
        .await
        .expect("point the user at it");
    tx.commit().await.expect("commit");
    let url = format!("/cdn/{key}");
    assert_eq!(
        app.get_as(&viewer.token, &profile).await.body["avatar"],
        url.as_str()
    );
    assert_eq!(fetch(&app, &url).await, (200, "image/png".to_owned(), old));
    // A key that names a folder, or nothing, is not a file.
    for missing in [
        format!("/cdn/avatars/{}", a.id),
        format!("/cdn/avatars/{}/ffffffffffffffffffffffffffffffff.png", a.id),
    ] {
        assert_eq!(fetch(&app, &missing).await.0, 404, "{missing}");
    }
}

async fn status_and_presence_respect_privacy(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("hal").await;
    let friend = app.register("ida").await;
    let stranger = app.register("joe").await;
    befriend(&app, &a, &friend).await;
    assert_eq!(
        app.get_as(&a.token, "/users/online/count").await.body["onlineUserCount"],
        0
    );
    // Online means connected to the gateway.
    let mut sockets = Vec::new();
    for u in [&a, &friend, &stranger] {
        sockets.push(app.gateway_as(u).await.0);
    }
    let count = app.get_as(&a.token, "/users/online/count").await;
    assert_eq!(count.body["onlineUserCount"], 3);
    assert!(count.body["timestamp"].is_string());
    let list = app.get_as(&a.token, "/users/online/list").await;
    assert_eq!(
        names(&list),
        vec!["ida"],
        "only people one shares something with: {}",
        list.text
    );
    let p = app
        .get_as(&a.token, &format!("/users/{}/presence", friend.id))
        .await;
    assert_eq!(
        (p.status, p.body["status"].as_str()),
        (200, Some("online")),
        "{}",
        p.text
    );
    app.get_as(&a.token, &format!("/users/{}/presence", stranger.id))
        .await
        .assert_error(403, "Forbidden");
    app.get_as(&a.token, "/users/424242/presence")
        .await
        .assert_error(404, "Not Found");

    let st = app
        .put_as(
            &friend.token,
            "/users/@me/status",
            &json!({"status": "dnd", "customStatus": "focus"}),
        )
        .await;
    assert_eq!(
        (
            st.status,
            st.body["status"].as_str(),
            st.body["customStatus"].as_str()
        ),
        (200, Some("dnd"), Some("focus")),
        "{}",
        st.text
    );
    assert_eq!(
        app.get_as(&a.token, &format!("/users/{}/presence", friend.id))
            .await
            .body["status"],
        "dnd"
    );
    app.put_as(
        &friend.token,
        "/users/@me/status",
        &json!({"status": "invisible"}),
    )
    .await;
    assert_eq!(
        app.get_as(&a.token, &format!("/users/{}/presence", friend.id))
            .await
            .body["status"],
        "offline"
    );
    assert!(
        names(&app.get_as(&a.token, "/users/online/list").await).is_empty(),
        "invisible users are not listed"
    );
    app.put_as(
        &friend.token,
        "/users/@me/status",
        &json!({"status": "online"}),
    )
    .await;
    app.patch_as(
        &friend.token,
        "/users/@me/settings",
        &json!({"privacy": {"showOnlineStatus": false}}),
    )
    .await;
    assert_eq!(
        app.get_as(&a.token, &format!("/users/{}/presence", friend.id))
            .await
            .body["status"],
        "offline"
    );
    assert!(names(&app.get_as(&a.token, "/users/online/list").await).is_empty());
    app.put_as(&a.token, "/users/@me/status", &json!({"status": "offline"}))
        .await
        .assert_error(422, "Validation Error");
    app.put_as(&a.token, "/users/@me/status", &json!({"status": "busy"}))
        .await
        .assert_error(422, "Validation Error");
    sockets.remove(1).drop_connection().await;
    wait_until(|| async {
        app.get_as(&a.token, "/users/online/count").await.body["onlineUserCount"] == 2
    })
    .await;
    assert_eq!(
        app.get_as(&a.token, "/users/online/count").await.body["onlineUserCount"],
        2
    );
}

async fn befriend(app: &TestApp, a: &xcord_testkit::TestUser, b: &xcord_testkit::TestUser) {
    assert_eq!(
        app.put_as(
            &a.token,
            &format!("/users/@me/relationships/{}", b.id),
            &json!({})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.put_as(
            &b.token,
            &format!("/users/@me/relationships/{}", a.id),
            &json!({"type": "friend"})
        )
        .await
        .status,
        204
    );
}

fn kinds(res: &xcord_testkit::TestResponse) -> Vec<(String, String)> {
    res.body["relationships"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn friends_requests_and_blocks(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("kai").await;
    let b = app.register("lea").await;
    let path_b = format!("/users/@me/relationships/{}", b.id);
    let path_a = format!("/users/@me/relationships/{}", a.id);
    // An empty body is a friend request.
    let res = app
        .client
        .put(app.url(&format!("/api/v1{path_b}")))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("put");
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(
        kinds(&app.get_as(&a.token, "/users/@me/relationships").await),
        vec![("lea".into(), "pending_outgoing".into())]
    );
    assert_eq!(
        kinds(&app.get_as(&b.token, "/users/@me/relationships").await),
        vec![("kai".into(), "pending_incoming".into())]
    );
    assert_eq!(
        app.put_as(&a.token, &path_b, &json!({})).await.status,
        204,
        "repeating a request is harmless"
    );
    assert_eq!(
        app.put_as(&b.token, &path_a, &json!({})).await.status,
        204,
        "accept"
    );
    assert_eq!(
        kinds(&app.get_as(&a.token, "/users/@me/relationships").await),
        vec![("lea".into(), "friend".into())]
    );
    assert_eq!(app.delete_as(&b.token, &path_a).await.status, 204);
    assert!(
        kinds(&app.get_as(&a.token, "/users/@me/relationships").await).is_empty(),
        "unfriending is mutual"
    );
    app.delete_as(&b.token, &path_a)
        .await
        .assert_error(404, "Not Found");

    // A block ends the friendship and stops requests either way.
    befriend(&app, &a, &b).await;
    assert_eq!(
        app.put_as(&b.token, &path_a, &json!({"type": "block"}))
            .await
            .status,
        204
    );
    assert_eq!(
        kinds(&app.get_as(&b.token, "/users/@me/relationships").await),
        vec![("kai".into(), "blocked".into())]
    );
    assert!(
        kinds(&app.get_as(&a.token, "/users/@me/relationships").await).is_empty(),
        "a block is not shown to the blocked"
    );
    app.put_as(&a.token, &path_b, &json!({}))
        .await
        .assert_error(403, "Forbidden");
    app.put_as(&b.token, &path_a, &json!({}))
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        app.delete_as(&b.token, &path_a).await.status,
        204,
        "unblock"
    );
    assert_eq!(app.put_as(&a.token, &path_b, &json!({})).await.status, 204);

    app.put_as(
        &a.token,
        &format!("/users/@me/relationships/{}", a.id),
        &json!({}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.put_as(&a.token, "/users/@me/relationships/999999", &json!({}))
        .await
        .assert_error(404, "Not Found");
    app.put_as(&a.token, &path_b, &json!({"type": "marry"}))
        .await
        .assert_error(422, "Validation Error");
}

async fn public_keys_are_stored_as_given(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("max").await;
    let b = app.register("nia").await;
    let none = app.get_as(&b.token, &format!("/users/{}/keys", a.id)).await;
    assert_eq!(
        (none.status, none.body["publicKey"].clone()),
        (200, Value::Null)
    );
    let key = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----";
    let put = app
        .put_as(&a.token, "/users/@me/keys", &json!({"publicKey": key}))
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        app.get_as(&b.token, &format!("/users/{}/keys", a.id))
            .await
            .body["publicKey"],
        key
    );
    assert_eq!(
        app.get_as(&a.token, "/users/@me/keys").await.body["publicKey"],
        key
    );
    app.put_as(&a.token, "/users/@me/keys", &json!({"publicKey": ""}))
        .await
        .assert_error(422, "Validation Error");
    app.put_as(
        &a.token,
        "/users/@me/keys",
        &json!({"publicKey": "k".repeat(8193)}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.get_as(&a.token, "/users/777/keys")
        .await
        .assert_error(404, "Not Found");
}

async fn dm_channels_follow_privacy_and_blocks(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("ola").await;
    let b = app.register("pia").await;
    let c = app.register("quin").await;
    let first = app
        .post_as(
            &a.token,
            "/users/@me/dm-channels",
            &json!({"recipientId": b.id}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["type"], "dm");
    let ids: Vec<&str> = first.body["recipients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(ids.contains(&a.id.as_str()) && ids.contains(&b.id.as_str()));
    let again = app
        .post_as(
            &b.token,
            &format!("/users/{}/dm-channels", b.id),
            &json!({"recipientId": a.id}),
        )
        .await;
    assert_eq!(
        (again.status, again.body["id"].clone()),
        (200, first.body["id"].clone()),
        "one DM per pair, either way"
    );
    let list = app.get_as(&b.token, "/users/@me/dm-channels").await;
    assert_eq!(list.body["channels"].as_array().map(Vec::len), Some(1));
    app.get_as(&a.token, &format!("/users/{}/dm-channels", b.id))
        .await
        .assert_error(403, "Forbidden");
    app.post_as(
        &a.token,
        &format!("/users/{}/dm-channels", b.id),
        &json!({"recipientId": c.id}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipientId": a.id}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipientId": "8888"}),
    )
    .await
    .assert_error(404, "Not Found");
    app.post_as(&a.token, "/users/@me/dm-channels", &json!({}))
        .await
        .assert_error(422, "Validation Error");

    // allowDMs: none refuses everyone; friends refuses strangers until befriended.
    app.patch_as(
        &c.token,
        "/users/@me/settings",
        &json!({"privacy": {"allowDMs": "none"}}),
    )
    .await;
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipientId": c.id}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.patch_as(
        &c.token,
        "/users/@me/settings",
        &json!({"privacy": {"allowDMs": "friends"}}),
    )
    .await;
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipientId": c.id}),
    )
    .await
    .assert_error(403, "Forbidden");
    befriend(&app, &a, &c).await;
    assert_eq!(
        app.post_as(
            &a.token,
            "/users/@me/dm-channels",
            &json!({"recipientId": c.id})
        )
        .await
        .status,
        201
    );
    // Blocks, in either direction.
    let d = app.register("rae").await;
    app.put_as(
        &d.token,
        &format!("/users/@me/relationships/{}", a.id),
        &json!({"type": "block"}),
    )
    .await;
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipientId": d.id}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.post_as(
        &d.token,
        "/users/@me/dm-channels",
        &json!({"recipientId": a.id}),
    )
    .await
    .assert_error(403, "Forbidden");
}

async fn group_dms(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.register("sol").await;
    let b = app.register("tia").await;
    let c = app.register("uma").await;
    let g = app
        .post_as(
            &a.token,
            "/users/@me/dm-channels",
            &json!({"recipients": [b.id, c.id], "name": "trio"}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    assert_eq!(
        (
            g.body["type"].as_str(),
            g.body["ownerId"].as_str(),
            g.body["name"].as_str()
        ),
        (Some("group_dm"), Some(a.id.as_str()), Some("trio"))
    );
    assert_eq!(g.body["recipients"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        app.get_as(&c.token, "/users/@me/dm-channels").await.body["channels"][0]["id"],
        g.body["id"]
    );
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipients": [b.id]}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipients": [b.id, a.id]}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipients": [b.id, c.id], "recipientId": b.id}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.patch_as(
        &c.token,
        "/users/@me/settings",
        &json!({"privacy": {"allowDMs": "none"}}),
    )
    .await;
    app.post_as(
        &a.token,
        "/users/@me/dm-channels",
        &json!({"recipients": [b.id, c.id]}),
    )
    .await
    .assert_error(403, "Forbidden");
}
