//! Storage behaviour, each test body run on SQLite and on PostgreSQL.

use sqlx::Row as _;
use xcord_store::testing::TestDatabase;
use xcord_store::{
    Backend, NewMessage, NewUser, PostOutcome, Store, StoreError, StoreOptions, migrations,
};
use xcord_types::{Snowflake, SnowflakeGenerator, Timestamp};

async fn open(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend).await.expect("test database");
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (db, store)
}

fn new_user(ids: &SnowflakeGenerator, name: &str, email: Option<&str>) -> NewUser {
    NewUser {
        id: ids.next_id(),
        username: name.to_owned(),
        discriminator: "0420".to_owned(),
        email: email.map(str::to_owned),
        password_hash: email.map(|_| "$2b$04$hash".to_owned()),
        date_of_birth: None,
        is_guest: email.is_none(),
        created_at: Timestamp::now(),
    }
}

xcord_store::on_both_backends!(
    migrations_apply_every_embedded_version_once,
    users_round_trip_with_flags_and_large_ids,
    username_is_unique_regardless_of_case,
    email_is_unique_but_guests_may_have_none,
    foreign_keys_are_enforced,
    deleting_a_server_cascades_to_its_rows,
    message_nonce_is_unique_per_author_and_channel,
    concurrent_posts_are_committed_together_and_each_answered,
    closing_the_store_writes_the_posts_still_queued,
);

async fn migrations_apply_every_embedded_version_once(backend: Backend) {
    let (_db, store) = open(backend).await;
    let embedded: Vec<i64> = migrations::versions(&migrations::SQLITE)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(store.applied_migrations().await.expect("applied"), embedded);
    store.migrate().await.expect("second run is a no-op");
    assert_eq!(store.applied_migrations().await.expect("applied"), embedded);
}

async fn users_round_trip_with_flags_and_large_ids(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut u = new_user(
        &SnowflakeGenerator::new(1023),
        "Alice_1",
        Some("alice@example.com"),
    );
    // The largest id a snowflake can take survives storage unchanged.
    u.id = Snowflake::from_i64(i64::MAX);
    let created = store.create_user(&u).await.expect("create");
    assert_eq!(created.id, u.id);
    assert_eq!(created.username, "Alice_1");
    assert_eq!(created.email.as_deref(), Some("alice@example.com"));
    assert!(!created.email_verified && !created.is_guest && !created.mfa_enabled);
    assert_eq!(created.status, "online");
    assert_eq!(created.settings, "{}");
    assert_eq!(created.created_at, u.created_at);

    let by_name = store.user_by_username("aLiCe_1").await.expect("query");
    assert_eq!(by_name.as_ref().map(|u| u.id), Some(u.id));
    let by_mail = store
        .user_by_email("alice@example.com")
        .await
        .expect("query");
    assert_eq!(by_mail.map(|u| u.id), Some(u.id));
    assert_eq!(
        store
            .user_by_id(Snowflake::from_i64(1))
            .await
            .expect("query"),
        None
    );
    assert_eq!(store.user_by_username("bob").await.expect("query"), None);

    let guest = new_user(&SnowflakeGenerator::new(1), "guesty", None);
    let guest = store.create_user(&guest).await.expect("guest");
    assert!(guest.is_guest);
    assert_eq!(guest.password_hash, None);
}

async fn username_is_unique_regardless_of_case(backend: Backend) {
    let (_db, store) = open(backend).await;
    let ids = SnowflakeGenerator::new(1);
    store
        .create_user(&new_user(&ids, "Zed", Some("z1@example.com")))
        .await
        .expect("first");
    let err = store
        .create_user(&new_user(&ids, "zED", Some("z2@example.com")))
        .await
        .expect_err("same name in other case");
    match err {
        StoreError::Conflict(name) => assert!(name.contains("username"), "{name}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn email_is_unique_but_guests_may_have_none(backend: Backend) {
    let (_db, store) = open(backend).await;
    let ids = SnowflakeGenerator::new(1);
    store
        .create_user(&new_user(&ids, "one", Some("same@example.com")))
        .await
        .expect("first");
    let err = store
        .create_user(&new_user(&ids, "two", Some("same@example.com")))
        .await
        .expect_err("same e-mail");
    match err {
        StoreError::Conflict(name) => assert!(name.contains("email"), "{name}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    for name in ["guest_a", "guest_b", "guest_c"] {
        store
            .create_user(&new_user(&ids, name, None))
            .await
            .expect("guests share a NULL e-mail");
    }
}

async fn foreign_keys_are_enforced(backend: Backend) {
    let (_db, store) = open(backend).await;
    let err =
        sqlx::query("INSERT INTO members (server_id, user_id, joined_at) VALUES ($1, $2, $3)")
            .bind(42_i64)
            .bind(43_i64)
            .bind(0_i64)
            .execute(store.pool())
            .await
            .map_err(StoreError::from)
            .expect_err("no such server or user");
    assert!(matches!(err, StoreError::Integrity(_)), "{err:?}");
}

async fn deleting_a_server_cascades_to_its_rows(backend: Backend) {
    let (_db, store) = open(backend).await;
    let ids = SnowflakeGenerator::new(1);
    let owner = store
        .create_user(&new_user(&ids, "owner", Some("o@example.com")))
        .await
        .expect("owner");
    let server = ids.next_id().get();
    let channel = ids.next_id().get();
    let now = Timestamp::now().as_millis();
    let mut tx = store.begin_write().await.expect("tx");
    for sql in [
        "INSERT INTO servers (id, name, owner_id, created_at, updated_at) VALUES ($1, 'S', $2, $3, $3)",
        "INSERT INTO roles (id, server_id, name, created_at, updated_at) VALUES ($1, $1, '@everyone', $3, $3)",
        "INSERT INTO members (server_id, user_id, joined_at) VALUES ($1, $2, $3)",
        "INSERT INTO member_roles (server_id, user_id, role_id) VALUES ($1, $2, $1)",
    ] {
        sqlx::query(sql)
            .bind(server)
            .bind(owner.id.get())
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect(sql);
    }
    sqlx::query("INSERT INTO channels (id, server_id, type, name, nsfw, created_at, updated_at) VALUES ($1, $2, 'text', 'general', $3, $4, $4)")
        .bind(channel)
        .bind(server)
        .bind(false)
        .bind(now)
        .execute(&mut *tx)
        .await
        .expect("channel");
    sqlx::query("INSERT INTO messages (id, channel_id, author_id, content, encrypted, created_at) VALUES ($1, $2, $3, 'hi', $4, $5)")
        .bind(ids.next_id().get())
        .bind(channel)
        .bind(owner.id.get())
        .bind(false)
        .bind(now)
        .execute(&mut *tx)
        .await
        .expect("message");
    tx.commit().await.expect("commit");

    let nsfw = sqlx::query("SELECT nsfw FROM channels WHERE id = $1")
        .bind(channel)
        .fetch_one(store.pool())
        .await
        .expect("channel row");
    assert!(!store.flag(&nsfw, "nsfw").expect("flag"));

    sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(server)
        .execute(store.pool())
        .await
        .expect("delete server");
    for table in ["roles", "members", "member_roles", "channels", "messages"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(store.pool())
            .await
            .expect("count")
            .try_get(0)
            .expect("int");
        assert_eq!(n, 0, "{table} rows left after the server was deleted");
    }
}

async fn message_nonce_is_unique_per_author_and_channel(backend: Backend) {
    let (_db, store) = open(backend).await;
    let ids = SnowflakeGenerator::new(1);
    let a = store
        .create_user(&new_user(&ids, "a", Some("a@x.io")))
        .await
        .expect("a");
    let b = store
        .create_user(&new_user(&ids, "b", Some("b@x.io")))
        .await
        .expect("b");
    let channel = ids.next_id().get();
    sqlx::query("INSERT INTO channels (id, type, dm_key, created_at, updated_at) VALUES ($1, 'dm', 'k', 0, 0)")
        .bind(channel)
        .execute(store.pool())
        .await
        .expect("dm");
    let insert = |author: Snowflake, nonce: Option<&'static str>| {
        sqlx::query("INSERT INTO messages (id, channel_id, author_id, nonce, created_at) VALUES ($1, $2, $3, $4, 0)")
            .bind(ids.next_id().get())
            .bind(channel)
            .bind(author.get())
            .bind(nonce)
            .execute(store.pool())
    };
    insert(a.id, Some("n1")).await.expect("first");
    let dup = insert(a.id, Some("n1")).await.map_err(StoreError::from);
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    insert(b.id, Some("n1"))
        .await
        .expect("another author may reuse it");
    insert(a.id, None).await.expect("no nonce");
    insert(a.id, None).await.expect("no nonce twice");
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_and_keeps_data_across_reopen() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("db");
    let ids = SnowflakeGenerator::new(1);
    let id = {
        let store = Store::connect(db.url(), &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .expect("pragma")
            .try_get(0)
            .expect("text");
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .expect("pragma")
            .try_get(0)
            .expect("int");
        assert_eq!(fk, 1);
        let u = store
            .create_user(&new_user(&ids, "keeper", Some("k@x.io")))
            .await
            .expect("user");
        store.close().await;
        u.id
    };
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .expect("reopen");
    store.migrate().await.expect("migrate again");
    assert_eq!(
        store
            .user_by_id(id)
            .await
            .expect("query")
            .map(|u| u.username),
        Some("keeper".into())
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_an_error_not_a_hang() {
    let opts = StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let started = std::time::Instant::now();
    let res = Store::connect("postgres://nobody@127.0.0.1:1/none", &opts).await;
    assert!(res.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

async fn concurrent_posts_are_committed_together_and_each_answered(backend: Backend) {
    let (_db, store) = open(backend).await;
    let ids = SnowflakeGenerator::new(1);
    let a = store
        .create_user(&new_user(&ids, "poster", Some("p@x.io")))
        .await
        .expect("user");
    let channel = ids.next_id();
    sqlx::query("INSERT INTO channels (id, type, dm_key, created_at, updated_at) VALUES ($1, 'dm', 'k', 0, 0)")
        .bind(channel.get())
        .execute(store.pool())
        .await
        .expect("dm");
    // 200 posts at once, every tenth reusing one nonce: the queue fills and batches form.
    let posts: Vec<NewMessage> = (0..200)
        .map(|i| NewMessage {
            id: ids.next_id(),
            channel_id: channel,
            author_id: a.id,
            content: format!("m{i}"),
            nonce: (i % 10 == 0).then(|| "same".to_owned()),
            reply_to: None,
            mention_everyone: false,
            mentions: "{}".into(),
            mentioned_users: vec![a.id],
            encrypted: false,
            encrypted_keys: None,
            attachment_ids: Vec::new(),
            is_automatic: false,
            now: Timestamp::now(),
            events: Vec::new(),
        })
        .collect();
    let outcomes =
        futures_util::future::join_all(posts.iter().map(|m| store.post_message(m))).await;
    let mut created = 0;
    let mut duplicates = Vec::new();
    for (m, o) in posts.iter().zip(outcomes) {
        match o.expect("posted") {
            PostOutcome::Created(r) => {
                assert_eq!((r.id, r.content.as_str()), (m.id, m.content.as_str()));
                created += 1;
            }
            PostOutcome::Duplicate(first) => duplicates.push(first.id),
            PostOutcome::BadAttachments => panic!("no attachments here"),
        }
    }
    assert_eq!(created, 181, "180 without a nonce and the first with it");
    assert_eq!(duplicates.len(), 19);
    duplicates.dedup();
    assert_eq!(
        duplicates.len(),
        1,
        "every retry answers with the same first message"
    );
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query(sql)
                .bind(channel.get())
                .fetch_one(store.pool())
                .await
                .expect(sql)
                .try_get::<i64, _>(0)
                .expect("int")
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM messages WHERE channel_id = $1").await,
        181
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM message_mentions WHERE channel_id = $1").await,
        181
    );
    let last = count("SELECT last_message_id FROM channels WHERE id = $1").await;
    let max_stored = count("SELECT MAX(id) FROM messages WHERE channel_id = $1").await;
    assert_eq!(last, max_stored, "the channel points at its newest message");
}

/// A shutdown closes the store while posts still wait for the committer: each of them is
/// written and answered, `close` returns once they are, and a post that comes after the
/// close fails instead of hanging.
async fn closing_the_store_writes_the_posts_still_queued(backend: Backend) {
    let (db, store) = open(backend).await;
    let ids = SnowflakeGenerator::new(2);
    let a = store
        .create_user(&new_user(&ids, "closer", Some("c@x.io")))
        .await
        .expect("user");
    let channel = ids.next_id();
    sqlx::query("INSERT INTO channels (id, type, dm_key, created_at, updated_at) VALUES ($1, 'dm', 'k', 0, 0)")
        .bind(channel.get())
        .execute(store.pool())
        .await
        .expect("dm");
    let post = |i: usize| NewMessage {
        id: ids.next_id(),
        channel_id: channel,
        author_id: a.id,
        content: format!("queued {i}"),
        nonce: None,
        reply_to: None,
        mention_everyone: false,
        mentions: "{}".into(),
        mentioned_users: Vec::new(),
        encrypted: false,
        encrypted_keys: None,
        attachment_ids: Vec::new(),
        is_automatic: false,
        now: Timestamp::now(),
        events: Vec::new(),
    };
    let posts: Vec<NewMessage> = (0..150).map(post).collect();
    // Every post is queued before the close is asked for (the test runs on one thread and
    // the posts are polled first); the committer writes at most 64 of them per batch, so
    // most are still queued when the close arrives.
    let posting = futures_util::future::join_all(posts.iter().map(|m| store.post_message(m)));
    let closing = async {
        tokio::task::yield_now().await;
        store.close().await;
    };
    let (outcomes, ()) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures_util::future::join(posting, closing),
    )
    .await
    .expect("the close and every post finish");
    for (m, o) in posts.iter().zip(outcomes) {
        match o.expect("a queued post is written") {
            PostOutcome::Created(r) => assert_eq!(r.id, m.id),
            other => panic!("{other:?}"),
        }
    }
    let late = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store.post_message(&post(150)),
    )
    .await
    .expect("a late post answers");
    assert!(late.is_err(), "the store is closed: {late:?}");

    let reopened = Store::connect(db.url(), &StoreOptions::default())
        .await
        .expect("reopen");
    let stored: i64 = sqlx::query("SELECT COUNT(*) FROM messages WHERE channel_id = $1")
        .bind(channel.get())
        .fetch_one(reopened.pool())
        .await
        .expect("count")
        .try_get(0)
        .expect("int");
    assert_eq!(stored, 150);
    reopened.close().await;
}
