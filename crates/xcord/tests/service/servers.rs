//! Servers, channels, overwrites, roles, members, invites, moderation and the audit log over
//! HTTP, on both backends.

use serde_json::{Value, json};
use xcord_permissions::bits::*;
use xcord_testkit::{Backend, TestApp, TestUser, on_both_backends, spawn_app, string_at};

on_both_backends!(
    creating_a_server_makes_its_defaults,
    server_changes_need_permission_and_a_current_version,
    channels_are_created_checked_and_versioned,
    channel_types_keep_their_names_and_their_refusals,
    server_icons_are_stored_served_and_replaced,
    hidden_channels_do_not_exist_for_the_caller,
    overwrites_are_checked,
    roles_are_ordered_and_guarded,
    hierarchy_matrix,
    members_are_paged_and_editable,
    leaving_and_transferring_ownership,
    invites_limits_expiry_vanity_and_bans,
    bans_remove_members_and_their_recent_messages,
    audit_log_records_and_filters,
    stats_count_members_channels_and_days,
    events_are_published_after_commit,
    private_channels_through_the_channel_routes,
    new_users_join_the_default_server,
    outsiders_get_404_and_plain_members_403_everywhere,
);

async fn outsiders_get_404_and_plain_members_403_everywhere(backend: Backend) {
    use reqwest::Method;
    let app = spawn_app(backend).await;
    let owner = app.register("sw_owner").await;
    let member = app.register("sw_member").await;
    let outsider = app.register("sw_outsider").await;
    let srv = server(&app, &owner, "Sweep").await;
    invite_and_join(&app, &owner, &srv, &member).await;
    let role = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": "R"}),
        )
        .await
        .str_at("/id");
    let (s, c, m, o) = (&srv.id, &srv.text, &member.id, &owner.id);
    // (method, path, body, answer for a plain member; outsiders always get 404)
    let routes: Vec<(Method, String, Value, u16)> = vec![
        (Method::GET, format!("/servers/{s}"), json!(null), 200),
        (
            Method::PATCH,
            format!("/servers/{s}"),
            json!({"name": "Taken over"}),
            403,
        ),
        (Method::DELETE, format!("/servers/{s}"), json!(null), 403),
        (Method::GET, format!("/servers/{s}/stats"), json!(null), 200),
        (
            Method::GET,
            format!("/servers/{s}/channels"),
            json!(null),
            200,
        ),
        (
            Method::POST,
            format!("/servers/{s}/channels"),
            json!({"name": "x"}),
            403,
        ),
        (Method::GET, format!("/channels/{c}"), json!(null), 200),
        (
            Method::PATCH,
            format!("/channels/{c}"),
            json!({"name": "x"}),
            403,
        ),
        (Method::DELETE, format!("/channels/{c}"), json!(null), 403),
        (
            Method::PUT,
            format!("/channels/{c}/permissions/{s}"),
            json!({"targetType": "role", "deny": 2}),
            403,
        ),
        (Method::GET, format!("/servers/{s}/roles"), json!(null), 200),
        (
            Method::POST,
            format!("/servers/{s}/roles"),
            json!({"name": "x"}),
            403,
        ),
        (
            Method::PATCH,
            format!("/servers/{s}/roles/{role}"),
            json!({"name": "x"}),
            403,
        ),
        (
            Method::DELETE,
            format!("/servers/{s}/roles/{role}"),
            json!(null),
            403,
        ),
        (
            Method::GET,
            format!("/servers/{s}/members"),
            json!(null),
            200,
        ),
        (
            Method::GET,
            format!("/servers/{s}/members/{o}"),
            json!(null),
            200,
        ),
        (
            Method::PATCH,
            format!("/servers/{s}/members/{o}"),
            json!({"nickname": "x"}),
            403,
        ),
        (
            Method::PUT,
            format!("/servers/{s}/members/{m}/roles/{role}"),
            json!(null),
            403,
        ),
        (
            Method::POST,
            format!("/servers/{s}/members/{o}/kick"),
            json!({}),
            403,
        ),
        (Method::GET, format!("/servers/{s}/bans"), json!(null), 403),
        (
            Method::POST,
            format!("/servers/{s}/bans"),
            json!({"userId": o}),
            403,
        ),
        (
            Method::GET,
            format!("/servers/{s}/invites"),
            json!(null),
            403,
        ),
        (
            Method::GET,
            format!("/servers/{s}/audit-log"),
            json!(null),
            403,
        ),
    ];
    for (method, path, body, as_member) in &routes {
        let body = (!body.is_null()).then_some(body);
        let res = app
            .request(
                method.clone(),
                &format!("/api/v1{path}"),
                body,
                Some(&outsider.token),
            )
            .await;
        assert_eq!(res.status, 404, "outsider {method} {path}: {}", res.text);
        let res = app
            .request(
                method.clone(),
                &format!("/api/v1{path}"),
                body,
                Some(&member.token),
            )
            .await;
        assert_eq!(
            res.status, *as_member,
            "member {method} {path}: {}",
            res.text
        );
    }
    // Nothing the refused calls tried happened.
    let after = app.get_as(&owner.token, &format!("/servers/{s}")).await;
    assert_eq!(
        (
            after.body["name"].as_str(),
            after.body["memberCount"].as_i64()
        ),
        (Some("Sweep"), Some(2))
    );
    assert_eq!(after.body["roles"].as_array().map(Vec::len), Some(2));
    assert_eq!(after.body["channels"].as_array().map(Vec::len), Some(2));
}

async fn new_users_join_the_default_server(backend: Backend) {
    let fixed = xcord_types::Snowflake::from_i64(4_242_424_242);
    let app = xcord_testkit::TestAppBuilder::new(backend)
        .configure(move |c| c.default_server_id = Some(fixed))
        .spawn()
        .await;
    // The owner signs up before the server exists: nothing to join yet, and no error.
    let owner = app.register("community_owner").await;
    let ids = xcord_types::SnowflakeGenerator::new(9);
    let store = &app.state.core.store;
    let mut tx = store.begin_write().await.expect("begin");
    store
        .create_server(
            &mut tx,
            &xcord_store::NewServer {
                id: fixed,
                name: "Hype Community".into(),
                icon: None,
                owner_id: owner.id.parse().expect("id"),
                everyone_permissions: EVERYONE_DEFAULT as i64,
                text_channel_id: ids.next_id(),
                voice_channel_id: ids.next_id(),
                now: xcord_types::Timestamp::now(),
            },
        )
        .await
        .expect("server");
    tx.commit().await.expect("commit");
    let newcomer = app.register("newcomer").await;
    let guest = TestUser::from_login(
        &app.post_api("/auth/guest", &json!({"username": "guesty_mc"}))
            .await
            .body,
    );
    for u in [&newcomer, &guest] {
        let mine = app.get_as(&u.token, "/servers").await;
        assert_eq!(ids_of(&mine.body), vec![fixed.to_string()], "{}", mine.text);
    }
    assert_eq!(
        app.get_as(&owner.token, &format!("/servers/{fixed}"))
            .await
            .body["memberCount"],
        3
    );
}

fn ids_of(v: &Value) -> Vec<String> {
    ids(v, "servers")
}

/// A server owned by `owner`, and the ids of its default channels.
struct Srv {
    id: String,
    text: String,
    voice: String,
}

async fn server(app: &TestApp, owner: &TestUser, name: &str) -> Srv {
    let res = app
        .post_as(&owner.token, "/servers", &json!({"name": name}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let ch = |kind: &str| {
        res.body["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_else(|| panic!("no {kind} channel in the new server: {}", res.text))
            .to_owned()
    };
    Srv {
        id: res.str_at("/id"),
        text: ch("text"),
        voice: ch("voice"),
    }
}

async fn invite_and_join(app: &TestApp, owner: &TestUser, srv: &Srv, who: &TestUser) {
    let inv = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/invites", srv.id),
            &json!({}),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.text);
    let code = inv.str_at("/code");
    let res = app
        .post_as(&who.token, &format!("/invites/{code}"), &json!({}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
}

/// Creates a role with `perms` and gives it to `member`; returns the role id.
async fn role_for(
    app: &TestApp,
    owner: &TestUser,
    srv: &Srv,
    member: &TestUser,
    name: &str,
    perms: u64,
) -> String {
    let r = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": name, "permissions": perms}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rid = r.str_at("/id");
    let res = app
        .put_as(
            &owner.token,
            &format!("/servers/{}/members/{}/roles/{rid}", srv.id, member.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    rid
}

async fn visible_channels(app: &TestApp, token: &str, server: &str) -> Vec<String> {
    ids(
        &app.get_as(token, &format!("/servers/{server}/channels"))
            .await
            .body,
        "channels",
    )
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["id"].as_str().map(str::to_owned))
        .collect()
}

async fn creating_a_server_makes_its_defaults(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("founder").await;
    let res = app
        .post_as(&owner.token, "/servers", &json!({"name": "Hype Community"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let b = &res.body;
    assert_eq!(
        (
            b["name"].as_str(),
            b["ownerId"].as_str(),
            b["memberCount"].as_i64()
        ),
        (Some("Hype Community"), Some(owner.id.as_str()), Some(1))
    );
    let roles = b["roles"].as_array().cloned().unwrap_or_default();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        (
            roles[0]["name"].as_str(),
            roles[0]["position"].as_i64(),
            roles[0]["id"].clone()
        ),
        (Some("@everyone"), Some(0), b["id"].clone())
    );
    let chans: Vec<(String, String)> = b["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        chans,
        vec![
            ("text".into(), "general".into()),
            ("voice".into(), "General".into())
        ]
    );
    let mine = app.get_as(&owner.token, "/servers").await;
    assert_eq!(ids(&mine.body, "servers"), vec![string_at(b, "/id")]);
    for bad in [
        json!({"name": "x"}),
        json!({"name": "y".repeat(101)}),
        json!({}),
        json!({"name": "ok name", "icon": "%%%"}),
    ] {
        app.post_as(&owner.token, "/servers", &bad)
            .await
            .assert_error(422, "Validation Error");
    }
    // An icon is decoded, checked and stored like an avatar.
    use base64::Engine as _;
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(4, 4)
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let icon = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png.into_inner())
    );
    let with_icon = app
        .post_as(
            &owner.token,
            "/servers",
            &json!({"name": "Iconic", "icon": icon}),
        )
        .await;
    assert_eq!(with_icon.status, 201, "{}", with_icon.text);
    let url = with_icon.str_at("/icon");
    assert!(url.starts_with("/cdn/icons/"), "{url}");
    assert_eq!(app.get(&url).await.status, 200);
    // Outsiders cannot see it.
    let stranger = app.register("stranger").await;
    app.get_as(
        &stranger.token,
        &format!("/servers/{}", string_at(b, "/id")),
    )
    .await
    .assert_error(404, "Not Found");
    app.get_as(&stranger.token, "/servers/12345")
        .await
        .assert_error(404, "Not Found");
    app.get_as(&stranger.token, "/servers/abc")
        .await
        .assert_error(404, "Not Found");
}

fn png_of(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([shade, 40, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

fn data_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `GET url`: the status and the body's bytes.
async fn fetch(app: &TestApp, url: &str) -> (u16, Vec<u8>) {
    let res = app.client.get(app.url(url)).send().await.expect("cdn");
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("cdn body").to_vec())
}

/// Server icons go through the same file store as avatars: stored on creation, served from
/// `/cdn/icons/…`, replaced and removed by PATCH; bad input changes nothing.
async fn server_icons_are_stored_served_and_replaced(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("iconowner").await;
    let first = png_of(6, 6, 10);
    let created = app
        .post_as(
            &owner.token,
            "/servers",
            &json!({"name": "Icons", "icon": data_url(&first)}),
        )
        .await;
    created.expect_status(201, "create a server with an icon");
    let id = created.str_at("/id");
    let url = created.str_at("/icon");
    assert!(url.starts_with(&format!("/cdn/icons/{id}/")), "{url}");
    assert_eq!(fetch(&app, &url).await, (200, first));
    // Under its key, where earlier versions kept icons too.
    let key = url.trim_start_matches("/cdn/");
    assert!(app.data_dir().join("cdn").join(key).is_file(), "{key}");

    let path = format!("/servers/{id}");
    let second = png_of(9, 5, 200);
    let patched = app
        .patch_as(&owner.token, &path, &json!({"icon": data_url(&second)}))
        .await;
    patched.expect_status(200, "replace the icon");
    let new_url = patched.str_at("/icon");
    assert_ne!(new_url, url);
    assert_eq!(fetch(&app, &new_url).await, (200, second));
    assert_eq!(
        app.get_as(&owner.token, &path).await.body["icon"],
        new_url.as_str()
    );

    for (bad, status) in [
        (json!({"icon": "%%%"}), 422),
        (json!({"icon": data_url(b"not an image at all")}), 415),
    ] {
        let res = app.patch_as(&owner.token, &path, &bad).await;
        assert_eq!(res.status, status, "{bad}: {}", res.text);
    }
    assert_eq!(
        app.get_as(&owner.token, &path).await.body["icon"],
        new_url.as_str(),
        "refused icons change nothing"
    );
    let cleared = app
        .patch_as(&owner.token, &path, &json!({"icon": null}))
        .await;
    cleared.expect_status(200, "remove the icon");
    assert_eq!(cleared.body["icon"], Value::Null);
}

async fn server_changes_need_permission_and_a_current_version(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("boss").await;
    let member = app.register("worker").await;
    let outsider = app.register("outsider").await;
    let srv = server(&app, &owner, "Office").await;
    invite_and_join(&app, &owner, &srv, &member).await;
    let path = format!("/servers/{}", srv.id);
    app.patch_as(&outsider.token, &path, &json!({"name": "Mine"}))
        .await
        .assert_error(404, "Not Found");
    app.patch_as(&member.token, &path, &json!({"name": "Mine"}))
        .await
        .assert_error(403, "Forbidden");
    let v1 = app
        .get_as(&owner.token, &path)
        .await
        .expect_status(200, "read the server")
        .i64_at("/version");
    let ok = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1{path}"),
            Some(&json!({"name": "Office 2", "description": "work"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["version"].as_i64(), Some(v1 + 1));
    let with_version = |v: i64, body: Value| {
        let c = app
            .client
            .patch(app.url(&format!("/api/v1{path}")))
            .bearer_auth(&owner.token)
            .header("if-match", v.to_string())
            .json(&body);
        async move { TestApp::read(c.send().await.expect("send")).await }
    };
    with_version(v1, json!({"name": "Stale"}))
        .await
        .assert_error(409, "Conflict");
    assert_eq!(
        app.get_as(&owner.token, &path).await.body["name"],
        "Office 2",
        "a stale write changes nothing"
    );
    let fresh = with_version(v1 + 1, json!({"name": "Fresh"})).await;
    assert_eq!(
        (fresh.status, fresh.body["name"].as_str()),
        (200, Some("Fresh"))
    );
    let bad = app
        .client
        .patch(app.url(&format!("/api/v1{path}")))
        .bearer_auth(&owner.token)
        .header("if-match", "soon")
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 400);
    app.patch_as(&owner.token, &path, &json!({"vanityUrl": "Bad Code!"}))
        .await
        .assert_error(422, "Validation Error");
    assert_eq!(
        app.patch_as(&owner.token, &path, &json!({"vanityUrl": "office"}))
            .await
            .status,
        200
    );
    let other = server(&app, &owner, "Other").await;
    app.patch_as(
        &owner.token,
        &format!("/servers/{}", other.id),
        &json!({"vanityUrl": "office"}),
    )
    .await
    .assert_error(409, "Conflict");
    app.patch_as(
        &owner.token,
        &path,
        &json!({"description": "d".repeat(501)}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.delete_as(&member.token, &path)
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(app.delete_as(&owner.token, &path).await.status, 204);
    app.get_as(&owner.token, &path)
        .await
        .assert_error(404, "Not Found");
    app.get_as(&member.token, &format!("/channels/{}", srv.text))
        .await
        .assert_error(404, "Not Found");
}

async fn channels_are_created_checked_and_versioned(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("chanowner").await;
    let member = app.register("chanmember").await;
    let srv = server(&app, &owner, "Channels").await;
    invite_and_join(&app, &owner, &srv, &member).await;
    let base = format!("/servers/{}/channels", srv.id);
    let cat = app
        .post_as(
            &owner.token,
            &base,
            &json!({"name": "Info", "type": "category"}),
        )
        .await;
    assert_eq!(cat.status, 201, "{}", cat.text);
    let cat_id = cat.str_at("/id");
    let text = app.post_as(&owner.token, &base, &json!({"name": "rules", "parentId": cat_id, "topic": "read me", "nsfw": true, "rateLimitPerUser": 30})).await;
    assert_eq!(text.status, 201, "{}", text.text);
    assert_eq!(
        (
            text.body["type"].as_str(),
            text.body["parentId"].as_str(),
            text.body["rateLimitPerUser"].as_i64()
        ),
        (Some("text"), Some(cat_id.as_str()), Some(30))
    );
    let voice = app
        .post_as(
            &owner.token,
            &base,
            &json!({"name": "Lounge", "type": "voice", "userLimit": 5, "bitrate": 96}),
        )
        .await;
    assert_eq!(
        (
            voice.status,
            voice.body["userLimit"].as_i64(),
            voice.body["bitrate"].as_i64()
        ),
        (201, Some(5), Some(96)),
        "{}",
        voice.text
    );
    for (bad, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "type": "forum"}), "type"),
        (
            json!({"name": "x", "type": "voice", "userLimit": 100}),
            "userLimit",
        ),
        (
            json!({"name": "x", "type": "voice", "bitrate": 1000}),
            "bitrate",
        ),
        (json!({"name": "x", "topic": "t", "type": "voice"}), "topic"),
        (
            json!({"name": "x", "rateLimitPerUser": 99999}),
            "rateLimitPerUser",
        ),
        (json!({"name": "x", "parentId": srv.text}), "parentId"),
        (
            json!({"name": "x", "type": "category", "parentId": cat_id}),
            "parentId",
        ),
    ] {
        let res = app.post_as(&owner.token, &base, &bad).await;
        res.assert_error(422, "Validation Error");
        assert_eq!(
            res.body["details"][0]["field"], field,
            "{bad}: {}",
            res.text
        );
    }
    app.post_as(&member.token, &base, &json!({"name": "mine"}))
        .await
        .assert_error(403, "Forbidden");
    let id = text.str_at("/id");
    let path = format!("/channels/{id}");
    app.patch_as(&member.token, &path, &json!({"name": "x"}))
        .await
        .assert_error(403, "Forbidden");
    let patched = app
        .patch_as(
            &owner.token,
            &path,
            &json!({"topic": null, "parentId": null, "position": 9}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        (
            patched.body["topic"].clone(),
            patched.body["parentId"].clone(),
            patched.body["position"].as_i64()
        ),
        (Value::Null, Value::Null, Some(9))
    );
    let version = patched.i64_at("/version");
    let stale = app
        .client
        .patch(app.url(&format!("/api/v1{path}")))
        .bearer_auth(&owner.token)
        .header("if-match", (version - 1).to_string())
        .json(&json!({"name": "late"}))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status().as_u16(), 409);
    app.patch_as(
        &owner.token,
        &format!("/channels/{}", srv.voice),
        &json!({"rateLimitPerUser": 5}),
    )
    .await
    .assert_error(422, "Validation Error");
    let got = app.get_as(&member.token, &path).await;
    assert_eq!(
        (got.status, got.body["name"].as_str()),
        (200, Some("rules"))
    );
    app.delete_as(&member.token, &path)
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(app.delete_as(&owner.token, &path).await.status, 204);
    app.get_as(&owner.token, &path)
        .await
        .assert_error(404, "Not Found");
    assert_eq!(
        app.delete_as(&owner.token, &format!("/channels/{cat_id}"))
            .await
            .status,
        204
    );
}

/// Channel types are an enum inside; outside they are the same strings, and a type no
/// server channel can have is refused with the same detail as before, together with the
/// request's other failures.
async fn channel_types_keep_their_names_and_their_refusals(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("typeowner").await;
    let srv = server(&app, &owner, "Types").await;
    let base = format!("/servers/{}/channels", srv.id);
    let mut made = Vec::new();
    for (asked, answered) in [
        (json!(null), "text"),
        (json!("text"), "text"),
        (json!("voice"), "voice"),
        (json!("category"), "category"),
    ] {
        let res = app
            .post_as(&owner.token, &base, &json!({"name": "c", "type": asked}))
            .await;
        res.expect_status(201, "create a channel");
        assert_eq!(res.body["type"], answered, "{}", res.text);
        made.push((res.str_at("/id"), answered));
    }
    let listed = app.get_as(&owner.token, &base).await;
    for (id, kind) in &made {
        let found = listed.body["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == id.as_str());
        assert_eq!(found.map(|c| c["type"].clone()), Some(json!(kind)));
    }
    let audit = app
        .get_as(&owner.token, &format!("/servers/{}/audit-log", srv.id))
        .await;
    let logged: Vec<Value> = audit.body["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "channel_create")
        .map(|e| e["changes"]["type"].clone())
        .collect();
    assert!(
        logged.contains(&json!("voice")) && logged.contains(&json!("category")),
        "{}",
        audit.text
    );
    let refused =
        json!([{"field": "type", "rule": "enum", "message": "must be text, voice or category"}]);
    for asked in ["forum", "dm", "group_dm", "TEXT", ""] {
        let res = app
            .post_as(&owner.token, &base, &json!({"name": "x", "type": asked}))
            .await;
        res.assert_error(422, "Validation Error");
        assert_eq!(res.body["details"], refused, "{asked}: {}", res.text);
    }
    let several = app
        .post_as(
            &owner.token,
            &base,
            &json!({"name": "", "type": "forum", "bitrate": 64}),
        )
        .await;
    several.assert_error(422, "Validation Error");
    let fields: Vec<&str> = several.body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(fields, ["type", "name", "bitrate"], "{}", several.text);
    // Not a string at all stays a type error of the field.
    let number = app
        .post_as(&owner.token, &base, &json!({"name": "x", "type": 2}))
        .await;
    number.assert_error(422, "Validation Error");
    assert_eq!(
        (
            &number.body["details"][0]["field"],
            &number.body["details"][0]["rule"]
        ),
        (&json!("type"), &json!("type")),
        "{}",
        number.text
    );
    assert_eq!(
        visible_channels(&app, &owner.token, &srv.id).await.len(),
        2 + made.len(),
        "nothing refused was created"
    );
}

async fn hidden_channels_do_not_exist_for_the_caller(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("hider").await;
    let member = app.register("seeker").await;
    let srv = server(&app, &owner, "Secrets").await;
    invite_and_join(&app, &owner, &srv, &member).await;
    let staff = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": "Staff"}),
        )
        .await
        .str_at("/id");
    let secret = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/channels", srv.id),
            &json!({"name": "staff-only"}),
        )
        .await
        .str_at("/id");
    let ow = |target: &str| format!("/channels/{secret}/permissions/{target}");
    assert_eq!(
        app.put_as(
            &owner.token,
            &ow(&srv.id),
            &json!({"targetType": "role", "allow": 0, "deny": VIEW_CHANNELS})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.put_as(
            &owner.token,
            &ow(&staff),
            &json!({"targetType": "role", "allow": VIEW_CHANNELS, "deny": 0})
        )
        .await
        .status,
        204
    );
    assert!(
        !visible_channels(&app, &member.token, &srv.id)
            .await
            .contains(&secret)
    );
    app.get_as(&member.token, &format!("/channels/{secret}"))
        .await
        .assert_error(404, "Not Found");
    app.patch_as(
        &member.token,
        &format!("/channels/{secret}"),
        &json!({"name": "x"}),
    )
    .await
    .assert_error(404, "Not Found");
    assert!(
        !ids(
            &app.get_as(&member.token, &format!("/servers/{}", srv.id))
                .await
                .body,
            "channels"
        )
        .contains(&secret)
    );
    // The owner always sees it; a role overwrite lets the member in at once.
    assert!(
        visible_channels(&app, &owner.token, &srv.id)
            .await
            .contains(&secret)
    );
    assert_eq!(
        app.put_as(
            &owner.token,
            &format!("/servers/{}/members/{}/roles/{staff}", srv.id, member.id),
            &json!({})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.get_as(&member.token, &format!("/channels/{secret}"))
            .await
            .status,
        200
    );
    // A member overwrite has the last word.
    assert_eq!(
        app.put_as(
            &owner.token,
            &ow(&member.id),
            &json!({"targetType": "user", "allow": 0, "deny": VIEW_CHANNELS})
        )
        .await
        .status,
        204
    );
    app.get_as(&member.token, &format!("/channels/{secret}"))
        .await
        .assert_error(404, "Not Found");
    assert_eq!(
        app.delete_as(&owner.token, &ow(&member.id)).await.status,
        204
    );
    assert_eq!(
        app.get_as(&member.token, &format!("/channels/{secret}"))
            .await
            .status,
        200
    );
    let ch = app
        .get_as(&owner.token, &format!("/channels/{secret}"))
        .await;
    let kinds: Vec<&str> = ch.body["permissionOverwrites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["type"].as_str())
        .collect();
    assert_eq!(kinds, vec!["role", "role"]);
}

async fn overwrites_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("ow_owner").await;
    let manager = app.register("ow_manager").await;
    let member = app.register("ow_member").await;
    let srv = server(&app, &owner, "Overwrites").await;
    for u in [&manager, &member] {
        invite_and_join(&app, &owner, &srv, u).await;
    }
    role_for(
        &app,
        &owner,
        &srv,
        &manager,
        "Managers",
        MANAGE_ROLES | VIEW_CHANNELS,
    )
    .await;
    let path = |t: &str| format!("/channels/{}/permissions/{t}", srv.text);
    app.put_as(
        &member.token,
        &path(&srv.id),
        &json!({"targetType": "role", "deny": SEND_MESSAGES}),
    )
    .await
    .assert_error(403, "Forbidden");
    // One may only hand out what one has.
    app.put_as(
        &manager.token,
        &path(&member.id),
        &json!({"targetType": "user", "allow": BAN_MEMBERS}),
    )
    .await
    .assert_error(403, "Forbidden");
    assert_eq!(
        app.put_as(
            &manager.token,
            &path(&member.id),
            &json!({"targetType": "member", "deny": SEND_MESSAGES})
        )
        .await
        .status,
        204
    );
    app.put_as(
        &owner.token,
        &path(&member.id),
        &json!({"targetType": "group"}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.put_as(
        &owner.token,
        &path(&member.id),
        &json!({"targetType": "user", "allow": 1u64 << 40}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.put_as(
        &owner.token,
        &path("777777"),
        &json!({"targetType": "role"}),
    )
    .await
    .assert_error(404, "Not Found");
    app.put_as(
        &owner.token,
        &path(&app.register("nonmember").await.id),
        &json!({"targetType": "user"}),
    )
    .await
    .assert_error(404, "Not Found");
    app.delete_as(&owner.token, &path("777777"))
        .await
        .assert_error(404, "Not Found");
    app.put_as(
        &owner.token,
        "/channels/999/permissions/1",
        &json!({"targetType": "role"}),
    )
    .await
    .assert_error(404, "Not Found");
}

async fn roles_are_ordered_and_guarded(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("roleowner").await;
    let member = app.register("rolemember").await;
    let srv = server(&app, &owner, "Roles").await;
    invite_and_join(&app, &owner, &srv, &member).await;
    let base = format!("/servers/{}/roles", srv.id);
    let a = app
        .post_as(
            &owner.token,
            &base,
            &json!({"name": "A", "color": "#ff0000", "permissions": KICK_MEMBERS, "hoisted": true}),
        )
        .await;
    assert_eq!(
        (
            a.status,
            a.body["position"].as_i64(),
            a.body["permissions"].as_u64()
        ),
        (201, Some(1), Some(KICK_MEMBERS)),
        "{}",
        a.text
    );
    let b = app
        .post_as(&owner.token, &base, &json!({"name": "B"}))
        .await;
    assert_eq!(
        b.body["position"].as_i64(),
        Some(1),
        "new roles go just above @everyone"
    );
    let names = |v: &Value| {
        v["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&app.get_as(&member.token, &base).await.body),
        vec!["@everyone", "B", "A"]
    );
    let a_id = a.str_at("/id");
    let moved = app
        .patch_as(
            &owner.token,
            &format!("{base}/{a_id}"),
            &json!({"position": 1}),
        )
        .await;
    assert_eq!(
        (moved.status, moved.body["position"].as_i64()),
        (200, Some(1)),
        "{}",
        moved.text
    );
    assert_eq!(
        names(&app.get_as(&member.token, &base).await.body),
        vec!["@everyone", "A", "B"]
    );
    for bad in [
        json!({"name": ""}),
        json!({"color": "red"}),
        json!({"permissions": 1u64 << 50}),
        json!({"position": 0}),
    ] {
        app.post_as(&owner.token, &base, &bad)
            .await
            .assert_error(422, "Validation Error");
    }
    app.post_as(&member.token, &base, &json!({"name": "Mine"}))
        .await
        .assert_error(403, "Forbidden");
    let v = moved.i64_at("/version");
    let stale = app
        .client
        .patch(app.url(&format!("/api/v1{base}/{a_id}")))
        .bearer_auth(&owner.token)
        .header("if-match", (v + 5).to_string())
        .json(&json!({"name": "Z"}))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status().as_u16(), 409);
    app.delete_as(&owner.token, &format!("{base}/{}", srv.id))
        .await
        .assert_error(400, "Bad Request");
    app.patch_as(
        &owner.token,
        &format!("{base}/{}", srv.id),
        &json!({"name": "everybody"}),
    )
    .await
    .assert_error(422, "Validation Error");
    // @everyone's permissions can change.
    let ev = app
        .patch_as(
            &owner.token,
            &format!("{base}/{}", srv.id),
            &json!({"permissions": VIEW_CHANNELS | SEND_MESSAGES}),
        )
        .await;
    assert_eq!(ev.status, 200, "{}", ev.text);
    app.patch_as(
        &owner.token,
        &format!("{base}/424242"),
        &json!({"name": "x"}),
    )
    .await
    .assert_error(404, "Not Found");
    assert_eq!(
        app.put_as(
            &owner.token,
            &format!("/servers/{}/members/{}/roles/{a_id}", srv.id, member.id),
            &json!({})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.delete_as(&owner.token, &format!("{base}/{a_id}"))
            .await
            .status,
        204
    );
    let m = app
        .get_as(
            &owner.token,
            &format!("/servers/{}/members/{}", srv.id, member.id),
        )
        .await;
    assert_eq!(
        m.body["roles"],
        json!([]),
        "a deleted role leaves its members"
    );
    assert_eq!(
        names(&app.get_as(&member.token, &base).await.body),
        vec!["@everyone", "B"]
    );
}

async fn hierarchy_matrix(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("h_owner").await;
    let admin = app.register("h_admin").await;
    let mod_a = app.register("h_mod_a").await;
    let mod_b = app.register("h_mod_b").await;
    let plain = app.register("h_plain").await;
    let srv = server(&app, &owner, "Hierarchy").await;
    for u in [&admin, &mod_a, &mod_b, &plain] {
        invite_and_join(&app, &owner, &srv, u).await;
    }
    let mod_perms = KICK_MEMBERS | BAN_MEMBERS | MANAGE_ROLES | MANAGE_NICKNAMES;
    let mod_role = role_for(&app, &owner, &srv, &mod_a, "Mod", mod_perms).await;
    assert_eq!(
        app.put_as(
            &owner.token,
            &format!("/servers/{}/members/{}/roles/{mod_role}", srv.id, mod_b.id),
            &json!({})
        )
        .await
        .status,
        204
    );
    // Created last, so it sits above Mod.
    role_for(&app, &owner, &srv, &admin, "Admin", ADMINISTRATOR).await;
    let admin_role = app
        .get_as(&owner.token, &format!("/servers/{}/roles", srv.id))
        .await
        .body["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "Admin")
        .and_then(|r| r["id"].as_str().map(str::to_owned))
        .expect("the Admin role is listed");
    // Put Admin above Mod explicitly.
    assert_eq!(
        app.patch_as(
            &owner.token,
            &format!("/servers/{}/roles/{admin_role}", srv.id),
            &json!({"position": 2})
        )
        .await
        .status,
        200
    );

    // (actor, target, expected status) for a nickname change by someone else.
    let cases: [(&TestUser, &TestUser, u16); 8] = [
        (&mod_a, &plain, 200), // outranks a plain member
        (&plain, &mod_a, 403), // no MANAGE_NICKNAMES
        (&mod_a, &mod_b, 403), // equal rank
        (&mod_a, &admin, 403), // outranked
        (&mod_a, &owner, 403), // the owner is above everyone
        (&admin, &mod_a, 200), // above
        (&admin, &owner, 403), // even administrators are below the owner
        (&owner, &admin, 200), // the owner is above all
    ];
    for (actor, target, expected) in cases {
        let res = app
            .patch_as(
                &actor.token,
                &format!("/servers/{}/members/{}", srv.id, target.id),
                &json!({"nickname": "renamed"}),
            )
            .await;
        assert_eq!(
            res.status, expected,
            "{} renaming {}: {}",
            actor.id, target.id, res.text
        );
    }
    // Kicks follow the same ladder.
    app.post_as(
        &mod_a.token,
        &format!("/servers/{}/members/{}/kick", srv.id, mod_b.id),
        &json!({}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.post_as(
        &mod_a.token,
        &format!("/servers/{}/members/{}/kick", srv.id, owner.id),
        &json!({}),
    )
    .await
    .assert_error(403, "Forbidden");
    // Roles at or above one's own cannot be handed out or edited.
    app.put_as(
        &mod_a.token,
        &format!("/servers/{}/members/{}/roles/{mod_role}", srv.id, plain.id),
        &json!({}),
    )
    .await
    .assert_error(403, "Forbidden");
    app.patch_as(
        &mod_a.token,
        &format!("/servers/{}/roles/{mod_role}", srv.id),
        &json!({"name": "Boss"}),
    )
    .await
    .assert_error(403, "Forbidden");
    let low = app
        .post_as(
            &mod_a.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": "Helper"}),
        )
        .await;
    assert_eq!(low.status, 201, "{}", low.text);
    let low_id = low.str_at("/id");
    assert_eq!(
        app.put_as(
            &mod_a.token,
            &format!("/servers/{}/members/{}/roles/{low_id}", srv.id, plain.id),
            &json!({})
        )
        .await
        .status,
        204
    );
    app.post_as(
        &mod_a.token,
        &format!("/servers/{}/roles", srv.id),
        &json!({"name": "Too much", "permissions": ADMINISTRATOR}),
    )
    .await
    .assert_error(403, "Forbidden");
    assert_eq!(
        app.post_as(
            &mod_a.token,
            &format!("/servers/{}/members/{}/kick", srv.id, plain.id),
            &json!({"reason": "spam"})
        )
        .await
        .status,
        204
    );
    app.get_as(&plain.token, &format!("/servers/{}", srv.id))
        .await
        .assert_error(404, "Not Found");
}

async fn members_are_paged_and_editable(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("m_owner").await;
    let srv = server(&app, &owner, "Members").await;
    let mut joined = vec![owner.id.clone()];
    for i in 0..6 {
        let u = app.register(&format!("m_user{i}")).await;
        invite_and_join(&app, &owner, &srv, &u).await;
        joined.push(u.id.clone());
    }
    joined.sort_by_key(|id| id.parse::<i64>().expect("a user id"));
    let page = |after: Option<&str>| {
        let path = match after {
            Some(a) => format!("/servers/{}/members?limit=3&after={a}", srv.id),
            None => format!("/servers/{}/members?limit=3", srv.id),
        };
        let t = owner.token.clone();
        let app = &app;
        async move {
            app.get_as(&t, &path).await.body["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["user"]["id"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let p1 = page(None).await;
    let p2 = page(p1.last().map(String::as_str)).await;
    let p3 = page(p2.last().map(String::as_str)).await;
    let all: Vec<String> = [p1, p2, p3].concat();
    assert_eq!(all, joined, "pages cover every member once, in id order");
    for bad in ["limit=0", "limit=1001", "limit=x", "after=y"] {
        app.get_as(&owner.token, &format!("/servers/{}/members?{bad}", srv.id))
            .await
            .assert_error(422, "Validation Error");
    }
    let me = app
        .get_as(&owner.token, &format!("/servers/{}/members/@me", srv.id))
        .await;
    assert_eq!(
        (me.status, me.body["user"]["username"].as_str()),
        (200, Some("m_owner"))
    );
    let someone = app.login("m_user0", "Secret123").await;
    let nick = app
        .patch_as(
            &someone.token,
            &format!("/servers/{}/members/@me", srv.id),
            &json!({"nickname": "Zero"}),
        )
        .await;
    assert_eq!(
        (nick.status, nick.body["nickname"].as_str()),
        (200, Some("Zero")),
        "{}",
        nick.text
    );
    app.patch_as(
        &someone.token,
        &format!("/servers/{}/members/@me", srv.id),
        &json!({"nickname": "n".repeat(33)}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.patch_as(
        &someone.token,
        &format!("/servers/{}/members/{}", srv.id, owner.id),
        &json!({"nickname": "x"}),
    )
    .await
    .assert_error(403, "Forbidden");
    let r1 = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": "R1"}),
        )
        .await
        .expect_status(201, "create role R1")
        .str_at("/id");
    let r2 = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": "R2"}),
        )
        .await
        .expect_status(201, "create role R2")
        .str_at("/id");
    let set = app
        .patch_as(
            &owner.token,
            &format!("/servers/{}/members/{}", srv.id, someone.id),
            &json!({"roles": [r1, r2]}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.body["roles"].as_array().map(Vec::len), Some(2));
    let fewer = app
        .patch_as(
            &owner.token,
            &format!("/servers/{}/members/{}", srv.id, someone.id),
            &json!({"roles": [r2]}),
        )
        .await;
    assert_eq!(fewer.body["roles"], json!([r2]));
    app.patch_as(
        &owner.token,
        &format!("/servers/{}/members/{}", srv.id, someone.id),
        &json!({"roles": ["123"]}),
    )
    .await
    .assert_error(404, "Not Found");
    app.get_as(&owner.token, &format!("/servers/{}/members/999", srv.id))
        .await
        .assert_error(404, "Not Found");
    assert_eq!(
        app.delete_as(
            &owner.token,
            &format!("/servers/{}/members/{}/roles/{}", srv.id, someone.id, r2)
        )
        .await
        .status,
        204
    );
}

async fn leaving_and_transferring_ownership(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("l_owner").await;
    let heir = app.register("l_heir").await;
    let srv = server(&app, &owner, "Leaving").await;
    invite_and_join(&app, &owner, &srv, &heir).await;
    app.delete_as(&owner.token, &format!("/servers/{}/members/@me", srv.id))
        .await
        .assert_error(400, "Bad Request");
    app.patch_as(
        &heir.token,
        &format!("/servers/{}", srv.id),
        &json!({"ownerId": heir.id}),
    )
    .await
    .assert_error(403, "Forbidden");
    let outsider = app.register("l_out").await;
    app.patch_as(
        &owner.token,
        &format!("/servers/{}", srv.id),
        &json!({"ownerId": outsider.id}),
    )
    .await
    .assert_error(422, "Validation Error");
    let moved = app
        .patch_as(
            &owner.token,
            &format!("/servers/{}", srv.id),
            &json!({"ownerId": heir.id}),
        )
        .await;
    assert_eq!(
        (moved.status, moved.body["ownerId"].as_str()),
        (200, Some(heir.id.as_str())),
        "{}",
        moved.text
    );
    assert_eq!(
        app.delete_as(&owner.token, &format!("/servers/{}/members/@me", srv.id))
            .await
            .status,
        204
    );
    app.get_as(&owner.token, &format!("/servers/{}", srv.id))
        .await
        .assert_error(404, "Not Found");
    assert_eq!(
        app.get_as(&heir.token, &format!("/servers/{}", srv.id))
            .await
            .body["memberCount"],
        1
    );
    app.delete_as(&owner.token, &format!("/servers/{}/members/@me", srv.id))
        .await
        .assert_error(404, "Not Found");
}

async fn invites_limits_expiry_vanity_and_bans(backend: Backend) {
    use std::sync::Arc;
    use xcord_core::{Clock as _, ManualClock};
    let clock = ManualClock::new(xcord_types::Timestamp::now());
    let app = xcord_testkit::TestAppBuilder::new(backend)
        .clock(Arc::new(clock.clone()))
        .spawn()
        .await;
    let owner = app.register("i_owner").await;
    let (a, b, c) = (
        app.register("i_a").await,
        app.register("i_b").await,
        app.register("i_c").await,
    );
    let srv = server(&app, &owner, "Invites").await;
    let once = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/invites", srv.id),
            &json!({"maxUses": 1, "maxAgeSeconds": 0}),
        )
        .await;
    assert_eq!(
        (once.status, once.body["expiresAt"].clone()),
        (201, Value::Null),
        "{}",
        once.text
    );
    let code = once.str_at("/code");
    let preview = app.get(&format!("/api/v1/invites/{code}")).await;
    assert_eq!(
        (preview.status, preview.body["server"]["name"].as_str()),
        (200, Some("Invites")),
        "no token needed to preview"
    );
    assert_eq!(
        app.post_as(&a.token, &format!("/invites/{code}"), &json!({}))
            .await
            .status,
        200
    );
    // Used up: unknown to everyone, members included (as on Discord).
    app.post_as(&b.token, &format!("/invites/{code}"), &json!({}))
        .await
        .assert_error(404, "Not Found");
    app.post_as(&a.token, &format!("/invites/{code}"), &json!({}))
        .await
        .assert_error(404, "Not Found");
    app.get(&format!("/api/v1/invites/{code}"))
        .await
        .assert_error(404, "Not Found");
    // A member following a live invite again uses nothing up.
    let twice = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/invites", srv.id),
            &json!({"maxUses": 2}),
        )
        .await
        .str_at("/code");
    assert_eq!(
        app.post_as(&a.token, &format!("/invites/{twice}"), &json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/v1/invites/{twice}")).await.body["uses"],
        0
    );

    let short = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/invites", srv.id),
            &json!({"maxAgeSeconds": 60}),
        )
        .await;
    let short_code = short.str_at("/code");
    clock.advance_millis(61_000);
    assert!(clock.now().as_millis() > 0);
    app.post_as(&b.token, &format!("/invites/{short_code}"), &json!({}))
        .await
        .assert_error(404, "Not Found");

    for bad in [
        json!({"maxAgeSeconds": -1}),
        json!({"maxAgeSeconds": 700000}),
        json!({"maxUses": 101}),
    ] {
        app.post_as(&owner.token, &format!("/servers/{}/invites", srv.id), &bad)
            .await
            .assert_error(422, "Validation Error");
    }
    app.get_as(&a.token, &format!("/servers/{}/invites", srv.id))
        .await
        .assert_error(403, "Forbidden");
    let listed = app
        .get_as(&owner.token, &format!("/servers/{}/invites", srv.id))
        .await;
    assert_eq!(listed.body["invites"].as_array().map(Vec::len), Some(3));

    // A member's own invite can be deleted by them; others' needs MANAGE_SERVER.
    let mine = app
        .post_as(
            &a.token,
            &format!("/servers/{}/invites", srv.id),
            &json!({}),
        )
        .await
        .str_at("/code");
    app.delete_as(&a.token, &format!("/invites/{short_code}"))
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        app.delete_as(&a.token, &format!("/invites/{mine}"))
            .await
            .status,
        204
    );
    app.delete_as(&a.token, &format!("/invites/{mine}"))
        .await
        .assert_error(404, "Not Found");

    // Vanity codes work as invites; banned users are refused.
    assert_eq!(
        app.patch_as(
            &owner.token,
            &format!("/servers/{}", srv.id),
            &json!({"vanityUrl": "invites-rock"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.get("/api/v1/invites/invites-rock").await.body["server"]["id"],
        srv.id.as_str()
    );
    assert_eq!(
        app.post_as(&b.token, "/invites/invites-rock", &json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.post_as(
            &owner.token,
            &format!("/servers/{}/bans", srv.id),
            &json!({"userId": c.id, "reason": "no"})
        )
        .await
        .status,
        204
    );
    app.post_as(&c.token, "/invites/invites-rock", &json!({}))
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        app.delete_as(&owner.token, &format!("/servers/{}/bans/{}", srv.id, c.id))
            .await
            .status,
        204
    );
    assert_eq!(
        app.post_as(&c.token, "/invites/invites-rock", &json!({}))
            .await
            .status,
        200
    );
    app.post_as(&c.token, "/invites/nope-nope", &json!({}))
        .await
        .assert_error(404, "Not Found");
}

async fn bans_remove_members_and_their_recent_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("b_owner").await;
    let modr = app.register("b_mod").await;
    let troll = app.register("b_troll").await;
    let srv = server(&app, &owner, "Bans").await;
    for u in [&modr, &troll] {
        invite_and_join(&app, &owner, &srv, u).await;
    }
    role_for(&app, &owner, &srv, &modr, "Mod", BAN_MEMBERS).await;
    // Messages of the troll: one old (3 days), one recent; and one by the mod.
    let now = xcord_types::Timestamp::now().as_millis();
    let text: i64 = srv.text.parse().expect("a channel id");
    for (id, author, age_days) in [(1_i64, &troll, 3_i64), (2, &troll, 0), (3, &modr, 0)] {
        sqlx::query("INSERT INTO messages (id, channel_id, author_id, content, created_at) VALUES ($1, $2, $3, 'hi', $4)")
            .bind(id)
            .bind(text)
            .bind(author.id.parse::<i64>().expect("a user id"))
            .bind(now - age_days * 86_400_000)
            .execute(app.state.core.store.pool())
            .await
            .expect("message");
    }
    let bans = format!("/servers/{}/bans", srv.id);
    app.post_as(
        &modr.token,
        &bans,
        &json!({"userId": troll.id, "deleteMessageDays": 8}),
    )
    .await
    .assert_error(422, "Validation Error");
    app.post_as(&troll.token, &bans, &json!({"userId": modr.id}))
        .await
        .assert_error(403, "Forbidden");
    app.post_as(&modr.token, &bans, &json!({"userId": owner.id}))
        .await
        .assert_error(403, "Forbidden");
    app.post_as(&modr.token, &bans, &json!({"userId": modr.id}))
        .await
        .assert_error(400, "Bad Request");
    app.post_as(&modr.token, &bans, &json!({"userId": "999999"}))
        .await
        .assert_error(404, "Not Found");
    assert_eq!(
        app.post_as(
            &modr.token,
            &bans,
            &json!({"userId": troll.id, "reason": "trolling", "deleteMessageDays": 1})
        )
        .await
        .status,
        204
    );
    app.get_as(&troll.token, &format!("/servers/{}", srv.id))
        .await
        .assert_error(404, "Not Found");
    assert_eq!(
        app.get_as(&owner.token, &format!("/servers/{}", srv.id))
            .await
            .body["memberCount"],
        2
    );
    let deleted: Vec<i64> = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM messages WHERE deleted_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(app.state.core.store.pool())
    .await
    .expect("query");
    assert_eq!(
        deleted,
        vec![2],
        "only the troll's messages of the last day"
    );
    let list = app.get_as(&modr.token, &bans).await;
    assert_eq!(
        (
            list.body["bans"][0]["user"]["id"].as_str(),
            list.body["bans"][0]["reason"].as_str()
        ),
        (Some(troll.id.as_str()), Some("trolling"))
    );
    assert!(list.body["bans"][0]["user"].get("email").is_none());
    app.get_as(&troll.token, &bans)
        .await
        .assert_error(404, "Not Found");
    // Banning someone who is not a member works too (pre-emptive ban).
    let other = app.register("b_other").await;
    assert_eq!(
        app.post_as(&modr.token, &bans, &json!({"userId": other.id}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete_as(&modr.token, &format!("{bans}/{}", troll.id))
            .await
            .status,
        204
    );
    app.delete_as(&modr.token, &format!("{bans}/{}", troll.id))
        .await
        .assert_error(404, "Not Found");
}

async fn audit_log_records_and_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("a_owner").await;
    let member = app.register("a_member").await;
    let srv = server(&app, &owner, "Audit").await;
    invite_and_join(&app, &owner, &srv, &member).await;
    app.post_as(
        &owner.token,
        &format!("/servers/{}/channels", srv.id),
        &json!({"name": "logged"}),
    )
    .await;
    let role = app
        .post_as(
            &owner.token,
            &format!("/servers/{}/roles", srv.id),
            &json!({"name": "Temp"}),
        )
        .await
        .str_at("/id");
    app.patch_as(
        &owner.token,
        &format!("/servers/{}/roles/{role}", srv.id),
        &json!({"name": "Temp2"}),
    )
    .await;
    app.post_as(
        &owner.token,
        &format!("/servers/{}/members/{}/kick", srv.id, member.id),
        &json!({"reason": "testing"}),
    )
    .await;
    let log = app
        .get_as(&owner.token, &format!("/servers/{}/audit-log", srv.id))
        .await;
    assert_eq!(log.status, 200, "{}", log.text);
    let actions: Vec<&str> = log.body["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        vec![
            "member_kick",
            "role_update",
            "role_create",
            "channel_create",
            "invite_create"
        ],
        "newest first"
    );
    let kick = &log.body["entries"][0];
    assert_eq!(
        (
            kick["actorId"].as_str(),
            kick["targetId"].as_str(),
            kick["reason"].as_str()
        ),
        (
            Some(owner.id.as_str()),
            Some(member.id.as_str()),
            Some("testing")
        )
    );
    let only = app
        .get_as(
            &owner.token,
            &format!("/servers/{}/audit-log?action=role_update", srv.id),
        )
        .await;
    assert_eq!(only.body["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(only.body["entries"][0]["changes"]["name"], "Temp2");
    let two = app
        .get_as(
            &owner.token,
            &format!("/servers/{}/audit-log?limit=2", srv.id),
        )
        .await;
    let before = two.str_at("/entries/1/id");
    let rest = app
        .get_as(
            &owner.token,
            &format!("/servers/{}/audit-log?before={before}", srv.id),
        )
        .await;
    assert_eq!(rest.body["entries"].as_array().map(Vec::len), Some(3));
    app.get_as(
        &owner.token,
        &format!("/servers/{}/audit-log?limit=0", srv.id),
    )
    .await
    .assert_error(422, "Validation Error");
    let watcher = app.register("a_watcher").await;
    invite_and_join(&app, &owner, &srv, &watcher).await;
    app.get_as(&watcher.token, &format!("/servers/{}/audit-log", srv.id))
        .await
        .assert_error(403, "Forbidden");
    role_for(&app, &owner, &srv, &watcher, "Auditor", VIEW_AUDIT_LOG).await;
    assert_eq!(
        app.get_as(&watcher.token, &format!("/servers/{}/audit-log", srv.id))
            .await
            .status,
        200
    );
}

async fn stats_count_members_channels_and_days(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register("s_owner").await;
    let srv = server(&app, &owner, "Stats").await;
    let text: i64 = srv.text.parse().expect("a channel id");
    let now = xcord_types::Timestamp::now().as_millis();
    for (id, age) in [(10_i64, 0_i64), (11, 0), (12, 2), (13, 40)] {
        sqlx::query("INSERT INTO messages (id, channel_id, author_id, content, created_at) VALUES ($1, $2, $3, 'x', $4)")
            .bind(id)
            .bind(text)
            .bind(owner.id.parse::<i64>().expect("a user id"))
            .bind(now - age * 86_400_000)
            .execute(app.state.core.store.pool())
            .await
            .expect("message");
    }
    let (_online, _) = app.gateway_as(&owner).await;
    let s = app
        .get_as(&owner.token, &format!("/servers/{}/stats", srv.id))
        .await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(
        (
            s.body["memberCount"].as_i64(),
            s.body["onlineCount"].as_i64(),
            s.body["channelCount"].as_i64()
        ),
        (Some(1), Some(1), Some(2))
    );
    let days = s.body["messagesPerDay"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(days.len(), 30);
    assert_eq!(days[29]["count"], 2, "today");
    assert_eq!(days[27]["count"], 1, "two days ago");
    assert_eq!(
        days.iter().filter_map(|d| d["count"].as_i64()).sum::<i64>(),
        3,
        "older days are outside the window"
    );
    assert_eq!(days[29]["date"].as_str().map(str::len), Some(10));
}

async fn events_are_published_after_commit(backend: Backend) {
    use xcord_bus::{Topic, TopicFilter};
    let app = spawn_app(backend).await;
    let owner = app.register("e_owner").await;
    let joiner = app.register("e_joiner").await;
    let srv = server(&app, &owner, "Events").await;
    let mut sub = app.state.core.bus.subscribe(TopicFilter::All);
    invite_and_join(&app, &owner, &srv, &joiner).await;
    app.post_as(
        &owner.token,
        &format!("/servers/{}/channels", srv.id),
        &json!({"name": "news"}),
    )
    .await;
    app.post_as(
        &owner.token,
        &format!("/servers/{}/roles", srv.id),
        &json!({"name": "Fans"}),
    )
    .await;
    app.post_as(
        &owner.token,
        &format!("/servers/{}/members/{}/kick", srv.id, joiner.id),
        &json!({}),
    )
    .await;
    let server_id: xcord_types::Snowflake = srv.id.parse().expect("id");
    let mut seen = Vec::new();
    while let Ok(Ok(ev)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), sub.recv()).await
    {
        if ev.topic == Topic::Server(server_id) {
            let data: Value = serde_json::from_str(&ev.data).expect("json");
            seen.push((ev.name.to_string(), data));
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "SERVER_MEMBER_ADD",
            "CHANNEL_CREATE",
            "ROLE_CREATE",
            "SERVER_MEMBER_REMOVE"
        ]
    );
    assert_eq!(seen[0].1["member"]["user"]["id"], joiner.id.as_str());
    assert_eq!(seen[1].1["serverId"], srv.id.as_str());
    assert_eq!(seen[3].1, json!({"serverId": srv.id, "userId": joiner.id}));
}

async fn private_channels_through_the_channel_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, b, c, d) = (
        app.register("p_a").await,
        app.register("p_b").await,
        app.register("p_c").await,
        app.register("p_d").await,
    );
    let dm = app
        .post_as(
            &a.token,
            "/users/@me/dm-channels",
            &json!({"recipientId": b.id}),
        )
        .await
        .str_at("/id");
    assert_eq!(
        app.get_as(&b.token, &format!("/channels/{dm}")).await.body["type"],
        "dm"
    );
    app.get_as(&d.token, &format!("/channels/{dm}"))
        .await
        .assert_error(404, "Not Found");
    app.delete_as(&a.token, &format!("/channels/{dm}"))
        .await
        .assert_error(403, "Forbidden");
    app.patch_as(&a.token, &format!("/channels/{dm}"), &json!({"name": "x"}))
        .await
        .assert_error(403, "Forbidden");
    let g = app
        .post_as(
            &a.token,
            "/users/@me/dm-channels",
            &json!({"recipients": [b.id, c.id]}),
        )
        .await
        .str_at("/id");
    let renamed = app
        .patch_as(
            &c.token,
            &format!("/channels/{g}"),
            &json!({"name": "friends"}),
        )
        .await;
    assert_eq!(
        (renamed.status, renamed.body["name"].as_str()),
        (200, Some("friends")),
        "{}",
        renamed.text
    );
    app.patch_as(
        &d.token,
        &format!("/channels/{g}"),
        &json!({"name": "mine"}),
    )
    .await
    .assert_error(404, "Not Found");
}
