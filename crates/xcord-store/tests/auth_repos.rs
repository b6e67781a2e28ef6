//! Session, token, relationship and private-channel storage, on SQLite and PostgreSQL.

/// Runs one repository write in its own committed transaction.
macro_rules! committed {
    ($store:expr, |$tx:ident| $call:expr) => {{
        let mut $tx = $store.begin_write().await.expect("begin");
        let out = $call.await;
        $tx.commit().await.expect("commit");
        out
    }};
}

use std::sync::Arc;

use xcord_store::testing::TestDatabase;
use xcord_store::{
    Backend, NewSession, NewUser, ProfilePatch, RefreshOutcome, RelationshipType, Store,
    StoreError, StoreOptions, TokenPurpose,
};
use xcord_types::{Snowflake, SnowflakeGenerator, Timestamp};

struct Fixture {
    _db: TestDatabase,
    store: Store,
    ids: SnowflakeGenerator,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDatabase::new(backend).await.expect("db");
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Fixture {
        _db: db,
        store,
        ids: SnowflakeGenerator::new(2),
    }
}

impl Fixture {
    async fn user(&self, name: &str) -> Snowflake {
        let u = NewUser {
            id: self.ids.next_id(),
            username: name.to_owned(),
            discriminator: "0001".into(),
            email: Some(format!("{}@example.com", name.to_ascii_lowercase())),
            password_hash: Some("h".into()),
            date_of_birth: None,
            is_guest: false,
            created_at: Timestamp::from_millis(1_000),
        };
        self.store.create_user(&u).await.expect("user").id
    }

    async fn session(&self, user: Snowflake, refresh_hash: &str, now: i64) -> Snowflake {
        let s = NewSession {
            id: self.ids.next_id(),
            user_id: user,
            device: Some("Firefox on Linux".into()),
            user_agent: Some("Mozilla/5.0".into()),
            ip: Some("127.0.0.1".into()),
            now: Timestamp::from_millis(now),
            expires_at: Timestamp::from_millis(now + 10_000),
            refresh_hash: refresh_hash.into(),
        };
        self.store.create_session(&s).await.expect("session").id
    }
}

xcord_store::on_both_backends!(
    refresh_tokens_rotate_once_and_reuse_revokes_the_session,
    concurrent_use_of_one_refresh_token_rotates_exactly_once,
    expired_and_revoked_sessions_do_not_refresh,
    revoking_all_sessions_keeps_the_current_one,
    user_tokens_are_single_use_and_expire,
    totp_steps_cannot_be_replayed_and_backup_codes_work_once,
    profile_updates_patch_only_what_is_given,
    relationships_store_both_directions,
    dm_create_or_get_is_atomic,
    group_dms_and_listing,
    an_unknown_stored_channel_kind_is_an_error,
    search_matches_prefixes_literally,
    revocations_persist_until_expiry,
);

async fn refresh_tokens_rotate_once_and_reuse_revokes_the_session(backend: Backend) {
    let f = fixture(backend).await;
    let u = f.user("ann").await;
    let sid = f.session(u, "r1", 100).await;
    let t = |ms| Timestamp::from_millis(ms);
    match f
        .store
        .rotate_refresh_token("r1", "r2", t(200), t(20_000))
        .await
        .expect("rotate")
    {
        RefreshOutcome::Rotated(s) => {
            assert_eq!(s.id, sid);
            assert_eq!(s.last_used_at, t(200));
            assert_eq!(s.expires_at, t(20_000));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.store
            .rotate_refresh_token("r2", "r3", t(300), t(20_000))
            .await
            .expect("rotate"),
        RefreshOutcome::Rotated(_)
    ));
    // r1 again: theft. The session dies, and with it the live token r3.
    match f
        .store
        .rotate_refresh_token("r1", "x", t(400), t(20_000))
        .await
        .expect("reuse")
    {
        RefreshOutcome::Reused(s) => assert_eq!(s.revoked_at, Some(t(400))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.store
            .rotate_refresh_token("r3", "r4", t(500), t(20_000))
            .await
            .expect("dead"),
        RefreshOutcome::Dead
    );
    assert_eq!(
        f.store
            .rotate_refresh_token("nope", "y", t(500), t(20_000))
            .await
            .expect("unknown"),
        RefreshOutcome::Unknown
    );
    assert!(
        f.store
            .live_sessions(u, t(500))
            .await
            .expect("list")
            .is_empty()
    );
}

async fn concurrent_use_of_one_refresh_token_rotates_exactly_once(backend: Backend) {
    let f = Arc::new(fixture(backend).await);
    let u = f.user("race").await;
    f.session(u, "start", 100).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.store
                .rotate_refresh_token(
                    "start",
                    &format!("next{i}"),
                    Timestamp::from_millis(200),
                    Timestamp::from_millis(9_000),
                )
                .await
        }));
    }
    let mut rotated = 0;
    let mut reused = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(RefreshOutcome::Rotated(_)) => rotated += 1,
            Ok(RefreshOutcome::Reused(_) | RefreshOutcome::Dead) => reused += 1,
            Ok(RefreshOutcome::Unknown) => panic!("token vanished"),
            // SQLite may report a busy database under a burst of writers; that is a refusal,
            // never a second rotation.
            Err(StoreError::Unavailable(_) | StoreError::Other(_)) => reused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent refresh may win");
    assert_eq!(rotated + reused, 6);
}

async fn expired_and_revoked_sessions_do_not_refresh(backend: Backend) {
    let f = fixture(backend).await;
    let u = f.user("exp").await;
    f.session(u, "old", 0).await;
    // Expires at 10_000.
    assert_eq!(
        f.store
            .rotate_refresh_token(
                "old",
                "n",
                Timestamp::from_millis(10_001),
                Timestamp::from_millis(20_000)
            )
            .await
            .expect("q"),
        RefreshOutcome::Dead
    );
    let sid = f.session(u, "live", 0).await;
    assert!(
        f.store
            .revoke_session(u, sid, Timestamp::from_millis(5))
            .await
            .expect("revoke")
    );
    assert!(
        !f.store
            .revoke_session(u, sid, Timestamp::from_millis(6))
            .await
            .expect("twice")
    );
    let other = f.user("other").await;
    let theirs = f.session(other, "theirs", 0).await;
    assert!(
        !f.store
            .revoke_session(u, theirs, Timestamp::from_millis(6))
            .await
            .expect("not mine")
    );
    assert_eq!(
        f.store
            .rotate_refresh_token(
                "live",
                "n2",
                Timestamp::from_millis(7),
                Timestamp::from_millis(20_000)
            )
            .await
            .expect("q"),
        RefreshOutcome::Dead
    );
}

async fn revoking_all_sessions_keeps_the_current_one(backend: Backend) {
    let f = fixture(backend).await;
    let u = f.user("many").await;
    let a = f.session(u, "a", 10).await;
    let b = f.session(u, "b", 20).await;
    let c = f.session(u, "c", 30).await;
    let mut revoked = f
        .store
        .revoke_all_sessions(u, Some(b), Timestamp::from_millis(40))
        .await
        .expect("revoke");
    revoked.sort();
    assert_eq!(revoked, vec![a, c]);
    let live: Vec<_> = f
        .store
        .live_sessions(u, Timestamp::from_millis(41))
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, vec![b]);
    assert_eq!(
        f.store
            .revoke_all_sessions(u, None, Timestamp::from_millis(50))
            .await
            .expect("all"),
        vec![b]
    );
}

async fn user_tokens_are_single_use_and_expire(backend: Backend) {
    let f = fixture(backend).await;
    let u = f.user("tok").await;
    let t = Timestamp::from_millis;
    f.store
        .create_user_token("h1", u, TokenPurpose::VerifyEmail, t(1_000), t(0))
        .await
        .expect("create");
    assert_eq!(
        committed!(f.store, |tx| f.store.consume_user_token(
            &mut tx,
            "h1",
            TokenPurpose::ResetPassword,
            t(10)
        ))
        .expect("q"),
        None,
        "wrong purpose"
    );
    assert_eq!(
        committed!(f.store, |tx| f.store.consume_user_token(
            &mut tx,
            "h1",
            TokenPurpose::VerifyEmail,
            t(10)
        ))
        .expect("q"),
        Some(u)
    );
    assert_eq!(
        committed!(f.store, |tx| f.store.consume_user_token(
            &mut tx,
            "h1",
            TokenPurpose::VerifyEmail,
            t(11)
        ))
        .expect("q"),
        None,
        "single use"
    );
    f.store
        .create_user_token("h2", u, TokenPurpose::ResetPassword, t(1_000), t(0))
        .await
        .expect("create");
    assert_eq!(
        committed!(f.store, |tx| f.store.consume_user_token(
            &mut tx,
            "h2",
            TokenPurpose::ResetPassword,
            t(1_000)
        ))
        .expect("q"),
        None,
        "expired"
    );
    f.store
        .create_user_token("h3", u, TokenPurpose::MfaTicket, t(1_000), t(0))
        .await
        .expect("create");
    assert_eq!(
        f.store
            .peek_user_token("h3", TokenPurpose::MfaTicket, t(5))
            .await
            .expect("q"),
        Some((u, 0))
    );
    assert_eq!(f.store.fail_user_token("h3").await.expect("fail"), 1);
    assert_eq!(f.store.fail_user_token("h3").await.expect("fail"), 2);
    assert_eq!(
        f.store
            .peek_user_token("h3", TokenPurpose::MfaTicket, t(5))
            .await
            .expect("q"),
        Some((u, 2))
    );
    f.store
        .expire_user_tokens(u, TokenPurpose::MfaTicket, t(6))
        .await
        .expect("expire");
    assert_eq!(
        f.store
            .peek_user_token("h3", TokenPurpose::MfaTicket, t(7))
            .await
            .expect("q"),
        None
    );
}

async fn totp_steps_cannot_be_replayed_and_backup_codes_work_once(backend: Backend) {
    let f = fixture(backend).await;
    let u = f.user("mfa").await;
    let now = Timestamp::from_millis(5);
    committed!(f.store, |tx| f.store.set_mfa(
        &mut tx,
        u,
        Some("sealed"),
        true,
        now
    ))
    .expect("set");
    let rec = f.store.user_by_id(u).await.expect("q").expect("user");
    assert!(rec.mfa_enabled);
    assert_eq!(rec.mfa_secret.as_deref(), Some("sealed"));
    assert!(f.store.claim_mfa_step(u, 100).await.expect("claim"));
    assert!(!f.store.claim_mfa_step(u, 100).await.expect("replay"));
    assert!(!f.store.claim_mfa_step(u, 99).await.expect("older"));
    assert!(f.store.claim_mfa_step(u, 101).await.expect("next"));
    committed!(f.store, |tx| f.store.replace_backup_codes(
        &mut tx,
        u,
        &["c1".into(), "c2".into()]
    ))
    .expect("codes");
    assert!(f.store.use_backup_code(u, "c1", now).await.expect("use"));
    assert!(!f.store.use_backup_code(u, "c1", now).await.expect("reuse"));
    assert!(
        !f.store
            .use_backup_code(u, "zz", now)
            .await
            .expect("unknown")
    );
    committed!(f.store, |tx| f.store.replace_backup_codes(
        &mut tx,
        u,
        &["c3".into()]
    ))
    .expect("replace");
    assert!(
        !f.store
            .use_backup_code(u, "c2", now)
            .await
            .expect("replaced codes die")
    );
    committed!(f.store, |tx| f.store.set_mfa(
        &mut tx,
        u,
        Some("sealed"),
        true,
        now
    ))
    .expect("still on");
    assert!(
        !f.store
            .claim_mfa_step(u, 101)
            .await
            .expect("turning on keeps the spent step")
    );
    committed!(f.store, |tx| f.store.set_mfa(&mut tx, u, None, false, now)).expect("off");
    assert!(
        f.store
            .claim_mfa_step(u, 1)
            .await
            .expect("step reset when MFA is turned off")
    );
}

async fn profile_updates_patch_only_what_is_given(backend: Backend) {
    let f = fixture(backend).await;
    let u = f.user("Prof").await;
    f.user("taken").await;
    let now = Timestamp::from_millis(77);
    let patched = committed!(f.store, |tx| f.store.update_profile(
        &mut tx,
        u,
        &ProfilePatch {
            bio: Some(Some("hello".into())),
            display_name: Some(Some("P".into())),
            ..Default::default()
        },
        now,
    ))
    .expect("patch")
    .expect("row");
    assert_eq!(
        (
            patched.bio.as_deref(),
            patched.display_name.as_deref(),
            patched.username.as_str()
        ),
        (Some("hello"), Some("P"), "Prof")
    );
    let cleared = committed!(f.store, |tx| f.store.update_profile(
        &mut tx,
        u,
        &ProfilePatch {
            bio: Some(None),
            ..Default::default()
        },
        now,
    ))
    .expect("patch")
    .expect("row");
    assert_eq!(
        (cleared.bio, cleared.display_name.as_deref()),
        (None, Some("P"))
    );
    committed!(f.store, |tx| f.store.set_email_verified(&mut tx, u, now)).expect("verify");
    let moved = committed!(f.store, |tx| f.store.update_profile(
        &mut tx,
        u,
        &ProfilePatch {
            email: Some("new@example.com".into()),
            ..Default::default()
        },
        now,
    ))
    .expect("patch")
    .expect("row");
    assert_eq!(moved.email.as_deref(), Some("new@example.com"));
    assert!(!moved.email_verified, "a new address starts unverified");
    let err = committed!(f.store, |tx| f.store.update_profile(
        &mut tx,
        u,
        &ProfilePatch {
            username: Some("TAKEN".into()),
            ..Default::default()
        },
        now,
    ))
    .expect_err("taken");
    assert!(
        matches!(&err, StoreError::Conflict(n) if n.contains("username")),
        "{err:?}"
    );
    assert_eq!(
        committed!(f.store, |tx| f.store.update_profile(
            &mut tx,
            Snowflake::from_i64(9),
            &ProfilePatch::default(),
            now
        ))
        .expect("q"),
        None
    );
    let found = f
        .store
        .users_by_ids(&[u, Snowflake::from_i64(9)])
        .await
        .expect("batch");
    assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), vec![u]);
}

async fn relationships_store_both_directions(backend: Backend) {
    let f = fixture(backend).await;
    let (a, b) = (f.user("ra").await, f.user("rb").await);
    let now = Timestamp::from_millis(3);
    assert_eq!(
        f.store.relationship_pair(a, b).await.expect("q"),
        (None, None)
    );
    committed!(f.store, |tx| f.store.set_relationship_pair(
        &mut tx,
        a,
        b,
        Some(RelationshipType::PendingOutgoing),
        Some(RelationshipType::PendingIncoming),
        now,
    ))
    .expect("request");
    assert_eq!(
        f.store.relationship_pair(b, a).await.expect("q"),
        (
            Some(RelationshipType::PendingIncoming),
            Some(RelationshipType::PendingOutgoing)
        )
    );
    committed!(f.store, |tx| f.store.set_relationship_pair(
        &mut tx,
        a,
        b,
        Some(RelationshipType::Friend),
        Some(RelationshipType::Friend),
        now,
    ))
    .expect("accept");
    let of_a = f.store.relationships_of(a).await.expect("list");
    assert_eq!(of_a.len(), 1);
    assert_eq!(
        (of_a[0].other_user_id, of_a[0].kind),
        (b, RelationshipType::Friend)
    );
    committed!(f.store, |tx| f.store.set_relationship_pair(
        &mut tx,
        a,
        b,
        Some(RelationshipType::Blocked),
        None,
        now
    ))
    .expect("block");
    assert_eq!(
        f.store.relationship_pair(a, b).await.expect("q"),
        (Some(RelationshipType::Blocked), None)
    );
    assert!(f.store.relationships_of(b).await.expect("list").is_empty());
}

async fn dm_create_or_get_is_atomic(backend: Backend) {
    let f = Arc::new(fixture(backend).await);
    let (a, b) = (f.user("da").await, f.user("db").await);
    let mut tasks = Vec::new();
    for i in 0..5 {
        let f = f.clone();
        // Both directions, concurrently: one channel results.
        let (x, y) = if i % 2 == 0 { (a, b) } else { (b, a) };
        tasks.push(tokio::spawn(async move {
            let id = f.ids.next_id();
            committed!(f.store, |tx| f.store.create_or_get_dm(
                &mut tx,
                id,
                x,
                y,
                Timestamp::from_millis(9)
            ))
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok((pc, new)) => {
                created += usize::from(new);
                ids.insert(pc.channel.id);
                assert_eq!(pc.channel.kind.as_str(), "dm");
                let mut r = pc.recipients.clone();
                r.sort();
                let mut want = vec![a, b];
                want.sort();
                assert_eq!(r, want);
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ids.len(), 1, "one DM channel per pair");
    assert_eq!(created, 1);
}

async fn group_dms_and_listing(backend: Backend) {
    let f = fixture(backend).await;
    let (a, b, c) = (f.user("ga").await, f.user("gb").await, f.user("gc").await);
    let now = Timestamp::from_millis(1);
    let g = committed!(f.store, |tx| f.store.create_group_dm(
        &mut tx,
        f.ids.next_id(),
        a,
        &[a, c, b],
        Some("trio"),
        now
    ))
    .expect("group");
    assert_eq!(g.recipients, vec![a, c, b]);
    assert_eq!(
        (
            g.channel.kind.as_str(),
            g.channel.owner_id,
            g.channel.name.as_deref()
        ),
        ("group_dm", Some(a), Some("trio"))
    );
    let (dm, _) = committed!(f.store, |tx| f.store.create_or_get_dm(
        &mut tx,
        f.ids.next_id(),
        a,
        b,
        now
    ))
    .expect("dm");
    let of_a = f.store.private_channels_of(a).await.expect("list");
    assert_eq!(of_a.len(), 2);
    assert_eq!(of_a[0].channel.id, dm.channel.id, "newest first");
    assert_eq!(of_a[1].recipients, vec![a, c, b]);
    assert_eq!(f.store.private_channels_of(c).await.expect("list").len(), 1);
    assert_eq!(f.store.recipients(dm.channel.id).await.expect("q").len(), 2);
}

/// A channel row whose `type` this version does not know (written by a newer version, or
/// edited by hand) fails every read of it: taking it for a text channel would compute the
/// wrong permissions for it.
async fn an_unknown_stored_channel_kind_is_an_error(backend: Backend) {
    let f = fixture(backend).await;
    let (a, b) = (f.user("ka").await, f.user("kb").await);
    let (dm, _) = committed!(f.store, |tx| f.store.create_or_get_dm(
        &mut tx,
        f.ids.next_id(),
        a,
        b,
        Timestamp::from_millis(1)
    ))
    .expect("dm");
    // The schema's CHECK refuses unknown kinds, so step around it the way each engine allows.
    let mut conn = f.store.pool().acquire().await.expect("connection");
    let bypass = match backend {
        Backend::Sqlite => "PRAGMA ignore_check_constraints = ON",
        Backend::Postgres => "ALTER TABLE channels DROP CONSTRAINT channels_type_check",
    };
    sqlx::query(bypass)
        .execute(&mut *conn)
        .await
        .expect("bypass");
    sqlx::query("UPDATE channels SET type = 'forum' WHERE id = $1")
        .bind(dm.channel.id.get())
        .execute(&mut *conn)
        .await
        .expect("tamper");
    drop(conn);
    match f.store.channel(dm.channel.id).await {
        Err(StoreError::Other(e)) => assert!(e.to_string().contains("forum"), "{e}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(
        matches!(
            f.store.private_channels_of(a).await,
            Err(StoreError::Other(_))
        ),
        "the listing fails too rather than leaving the channel out or calling it text"
    );
}

async fn search_matches_prefixes_literally(backend: Backend) {
    let f = fixture(backend).await;
    for name in ["alice", "Alina", "al_x", "alxx", "bob", "al"] {
        f.user(name).await;
    }
    let names =
        |v: Vec<xcord_store::UserRecord>| v.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(
        names(f.store.search_users("ali", 10).await.expect("q")),
        vec!["alice", "Alina"]
    );
    assert_eq!(
        names(f.store.search_users("AL", 10).await.expect("q")),
        vec!["al", "al_x", "alice", "Alina", "alxx"]
    );
    // `_` is a letter here, not a wildcard.
    assert_eq!(
        names(f.store.search_users("al_", 10).await.expect("q")),
        vec!["al_x"]
    );
    assert_eq!(
        names(f.store.search_users("al", 2).await.expect("q")).len(),
        2
    );
    assert!(f.store.search_users("zz", 10).await.expect("q").is_empty());
}

async fn revocations_persist_until_expiry(backend: Backend) {
    let f = fixture(backend).await;
    let t = Timestamp::from_millis;
    f.store.add_revoked("sid:1", t(100)).await.expect("add");
    f.store
        .add_revoked("sid:1", t(50))
        .await
        .expect("earlier expiry keeps the later");
    f.store.add_revoked("jti:x", t(10)).await.expect("add");
    let mut live = f.store.revoked_since(t(20)).await.expect("q");
    live.sort();
    assert_eq!(live, vec![("sid:1".to_owned(), t(100))]);
    assert_eq!(f.store.purge_revoked(t(20)).await.expect("purge"), 1);
}
