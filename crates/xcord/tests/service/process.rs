//! The real `xcord` binary: start with no configuration, answer, stop cleanly on signals,
//! keep data and secrets across restarts, refuse bad configuration with exit code 2.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use xcord_store::{Backend, NewUser, Store, StoreOptions};
use xcord_types::{SnowflakeGenerator, Timestamp};

const BIN: &str = env!("CARGO_BIN_EXE_xcord");

/// A running `xcord serve` and the lines it has printed.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
    pub(super) lines: mpsc::Receiver<String>,
}

/// `xcord` with a clean environment (no XCORD_* from the caller) in `dir`.
pub(super) fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// Starts `xcord serve` and waits for its `listening on ADDR` line.
pub(super) fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Running {
    let mut cmd = command(dir);
    cmd.arg("serve").args(args);
    launch(cmd, env)
}

/// Runs `cmd` (an `xcord serve` however wrapped) on a free port with `env` and waits for
/// its `listening on ADDR` line.
fn launch(mut cmd: Command, env: &[(&str, &str)]) -> Running {
    cmd.env("XCORD_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xcord");
    let (tx, lines) = mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(addr) = listening_addr(&line) {
                    return Running { child, addr, lines };
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("xcord exited with {status} before listening: {seen:#?}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("xcord never printed a listening line: {seen:#?}");
}

impl Drop for Running {
    /// A test that fails midway must not leave a server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    token.parse().ok()
}

pub(super) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "could not send {sig}");
}

/// Waits for the process to exit and returns its exit code.
pub(super) fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xcord did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /api/v1{path}` with a JSON body (and a bearer token): the status and the JSON
/// answer (null when there is none).
pub(super) async fn post_json(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = client
        .post(format!("http://{addr}/api/v1{path}"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

pub(super) async fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let res = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn serve_starts_with_no_configuration_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let mut first = start(dir.path(), &[], &[]);
    let (status, body) = get_json(first.addr, "/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("OK")),
        "{body}"
    );
    signal(&first.child, "TERM");
    assert_eq!(
        wait_exit(&mut first.child, Duration::from_secs(20)),
        0,
        "SIGTERM must exit 0"
    );
    let log: Vec<String> = first.lines.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("shutdown")), "{log:#?}");

    // The embedded default put everything under ./data.
    let data = dir.path().join("data");
    let db_file = data.join("xcord.db");
    assert!(db_file.is_file(), "no SQLite file in ./data");
    let secret = std::fs::read_to_string(data.join("jwt_secret")).expect("jwt secret kept");
    assert!(secret.len() >= 64);

    // Write a row while it is stopped, then restart on the same directory.
    let url = format!("sqlite://{}", db_file.display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("open");
    let ids = SnowflakeGenerator::new(5);
    let id = ids.next_id();
    store
        .create_user(&NewUser {
            id,
            username: "persisted".into(),
            discriminator: "0001".into(),
            email: Some("p@example.com".into()),
            password_hash: None,
            date_of_birth: None,
            is_guest: false,
            created_at: Timestamp::now(),
        })
        .await
        .expect("insert");
    store.close().await;

    let mut second = start(dir.path(), &[], &[]);
    assert_eq!(get_json(second.addr, "/health").await.0, 200);
    signal(&second.child, "INT");
    assert_eq!(
        wait_exit(&mut second.child, Duration::from_secs(20)),
        0,
        "SIGINT must exit 0"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("jwt_secret")).expect("secret"),
        secret
    );
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("reopen");
    let user = store.user_by_id(id).await.expect("query");
    assert_eq!(user.map(|u| u.username), Some("persisted".to_owned()));
    store.close().await;
}

#[tokio::test]
async fn serve_runs_on_postgres_when_the_url_says_so() {
    let db = xcord_store::testing::TestDatabase::new(Backend::Postgres)
        .await
        .expect("pg");
    let dir = tempfile::tempdir().expect("dir");
    // A subset of the roles needs Redis (SPEC §1).
    let (redis, prefix) = (test_redis_url(), unique_prefix("pg"));
    let mut run = start(
        dir.path(),
        &[
            ("XCORD_DATABASE_URL", db.url()),
            ("XCORD_LOG_FORMAT", "json"),
            ("XCORD_REDIS_URL", &redis),
            ("XCORD_REDIS_PREFIX", &prefix),
        ],
        &["--roles", "api,gateway"],
    );
    assert_eq!(get_json(run.addr, "/health").await.0, 200);
    signal(&run.child, "TERM");
    assert_eq!(wait_exit(&mut run.child, Duration::from_secs(20)), 0);
    // JSON logs: every line is an object.
    for line in run.lines.try_iter() {
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v.is_object()),
            "{line}"
        );
    }
    assert!(
        !dir.path().join("data").join("xcord.db").exists(),
        "must not fall back to SQLite"
    );
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .expect("pg");
    assert!(
        !store
            .applied_migrations()
            .await
            .expect("migrations")
            .is_empty()
    );
    store.close().await;
}

#[test]
fn version_and_migrate_commands() {
    let dir = tempfile::tempdir().expect("dir");
    let out = command(dir.path()).arg("version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("xcord {}", env!("CARGO_PKG_VERSION"))
    );

    let out = command(dir.path())
        .arg("migrate")
        .env("XCORD_LOG", "warn")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sqlite database is at migration"), "{text}");
    assert!(dir.path().join("data/xcord.db").is_file());
}

#[test]
fn bad_configuration_exits_2_and_names_the_problem() {
    let dir = tempfile::tempdir().expect("dir");
    for (env, args, needle) in [
        (
            vec![("XCORD_NODE_ID", "4096")],
            vec!["serve"],
            "XCORD_NODE_ID",
        ),
        (
            vec![("XCORD_RATE_LIMITS", "sometimes")],
            vec!["serve"],
            "XCORD_RATE_LIMITS",
        ),
        (
            vec![("XCORD_DATABASE_URL", "mysql://x")],
            vec!["serve"],
            "XCORD_DATABASE_URL",
        ),
        (vec![("XCORD_LOG", "info,[")], vec!["serve"], "XCORD_LOG"),
        (vec![], vec!["serve", "--roles", "api,web"], "unknown role"),
        // Some of the roles and no Redis, from the flag or the environment (SPEC §1).
        (vec![], vec!["serve", "--roles", "api"], "XCORD_REDIS_URL"),
        (
            vec![("XCORD_ROLES", "gateway,voice")],
            vec!["serve"],
            "XCORD_REDIS_URL",
        ),
        (
            vec![],
            vec!["--config", "missing.toml", "serve"],
            "missing.toml",
        ),
    ] {
        let mut cmd = command(dir.path());
        cmd.args(&args).env("XCORD_LISTEN", "127.0.0.1:0");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {stderr}");
        assert!(stderr.contains(needle), "{env:?} {args:?}: {stderr}");
    }
}

/// The Redis the tests share (`XCORD_TEST_REDIS_URL`, default the local one).
fn test_redis_url() -> String {
    std::env::var("XCORD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key prefix no other run uses.
fn unique_prefix(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("xcord-test-{what}-{}-{nanos}", std::process::id())
}

/// Two real processes on one PostgreSQL database and one Redis, one started with
/// `--roles api` and one with `--roles gateway`: each serves only its role, a client of the
/// gateway process receives what is posted through the api process, and its typing
/// indicator stops when the message is posted, whether the typing went to the api process
/// or over the gateway. SIGTERM stops both with 0, with no task left to abort.
#[tokio::test]
async fn an_api_process_and_a_gateway_process_work_together() {
    use serde_json::json;
    use xcord_testkit::ws::GatewayClient;

    let db = xcord_store::testing::TestDatabase::new(Backend::Postgres)
        .await
        .expect("test database");
    let (redis, prefix) = (test_redis_url(), unique_prefix("split"));
    let env = |node: &'static str| {
        vec![
            ("XCORD_DATABASE_URL", db.url()),
            ("XCORD_REDIS_URL", redis.as_str()),
            ("XCORD_REDIS_PREFIX", prefix.as_str()),
            // Shared by the nodes, as docs/gateway.md asks: tokens from one work on the other.
            (
                "XCORD_JWT_SECRET",
                "split-roles-test-secret-0123456789abcdef",
            ),
            ("XCORD_PASSWORD_HASH", "bcrypt:4"),
            ("XCORD_RATE_LIMITS", "off"),
            ("XCORD_NODE_ID", node),
        ]
    };
    let (api_dir, gw_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut api = start(api_dir.path(), &env("1"), &["--roles", "api"]);
    let mut gw = start(gw_dir.path(), &env("2"), &["--roles", "gateway"]);

    // Each serves its own role; both answer health.
    assert_eq!(get_json(gw.addr, "/api/v1/servers").await.0, 404);
    assert_eq!(get_json(api.addr, "/api/ws").await.0, 404);
    for node in [&api, &gw] {
        let (status, body) = get_json(node.addr, "/health").await;
        assert_eq!((status, &body["services"]["redis"]), (200, &json!("up")));
    }

    let client = reqwest::Client::new();
    let mut users = Vec::new();
    for name in ["split_ann", "split_bob"] {
        let (status, r) = post_json(
            &client,
            api.addr,
            "/auth/register",
            None,
            json!({"email": format!("{name}@example.com"), "username": name, "password": "Secret123"}),
        )
        .await;
        assert_eq!(status, 201, "{r}");
        users.push((
            r["userId"].as_str().expect("id").to_owned(),
            r["accessToken"].as_str().expect("token").to_owned(),
        ));
    }
    let ((ann_id, ann), (_, bob)) = (&users[0], &users[1]);
    let (status, server) = post_json(
        &client,
        api.addr,
        "/servers",
        Some(ann),
        json!({"name": "Split"}),
    )
    .await;
    assert_eq!(status, 201, "{server}");
    let server_id = server["id"].as_str().expect("server");
    let channel = server["channels"][0]["id"].as_str().expect("channel");
    let (status, invite) = post_json(
        &client,
        api.addr,
        &format!("/servers/{server_id}/invites"),
        Some(ann),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{invite}");
    let code = invite["code"].as_str().expect("code");
    let (status, joined) = post_json(
        &client,
        api.addr,
        &format!("/invites/{code}"),
        Some(bob),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{joined}");

    let (mut ann_ws, _) = GatewayClient::connect(gw.addr, ann).await;
    let (mut bob_ws, _) = GatewayClient::connect(gw.addr, bob).await;
    let say = |text: &'static str| {
        let client = &client;
        let addr = api.addr;
        async move {
            let (status, m) = post_json(
                client,
                addr,
                &format!("/channels/{channel}/messages"),
                Some(ann),
                json!({"content": text}),
            )
            .await;
            assert_eq!(status, 201, "{m}");
        }
    };

    // A post through the api process reaches the gateway process's client.
    say("hello across").await;
    assert_eq!(
        bob_ws.dispatch("MESSAGE_CREATE").await["content"],
        "hello across"
    );

    // Typing sent to the api process stops with the next message posted there.
    let (status, _) = post_json(
        &client,
        api.addr,
        &format!("/channels/{channel}/typing"),
        Some(ann),
        json!({}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        bob_ws.dispatch("TYPING_START").await["userId"],
        ann_id.as_str()
    );
    say("typed through the api").await;
    assert_eq!(
        bob_ws.dispatch("MESSAGE_CREATE").await["content"],
        "typed through the api"
    );
    assert_eq!(
        bob_ws.dispatch("TYPING_STOP").await["userId"],
        ann_id.as_str()
    );

    // Typing over the gateway process stops when the message goes through the api process.
    ann_ws
        .send(json!({"op": 5, "d": {"channelId": channel}}))
        .await;
    assert_eq!(
        bob_ws.dispatch("TYPING_START").await["userId"],
        ann_id.as_str()
    );
    say("typed over the gateway").await;
    assert_eq!(
        bob_ws.dispatch("MESSAGE_CREATE").await["content"],
        "typed over the gateway"
    );
    assert_eq!(
        bob_ws.dispatch("TYPING_STOP").await["userId"],
        ann_id.as_str()
    );

    for node in [&mut gw, &mut api] {
        signal(&node.child, "TERM");
        assert_eq!(wait_exit(&mut node.child, Duration::from_secs(30)), 0);
        let log: Vec<String> = node.lines.try_iter().collect();
        assert!(
            !log.iter()
                .any(|l| l.contains("in time") || l.contains("abnormally")),
            "a task had to be abandoned at shutdown: {log:#?}"
        );
    }
}

#[test]
fn an_occupied_port_is_a_clear_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let out = command(dir.path())
        .arg("serve")
        .env("XCORD_LISTEN", &addr)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {addr}")));
}

#[test]
fn the_listening_line_is_recognised() {
    assert_eq!(
        listening_addr(r#"{"message":"listening on 127.0.0.1:4242","addr":"127.0.0.1:4242"}"#),
        Some(SocketAddr::from(([127, 0, 0, 1], 4242)))
    );
    assert_eq!(
        listening_addr("2026 INFO xcord: listening on 127.0.0.1:80 roles=api"),
        Some(SocketAddr::from(([127, 0, 0, 1], 80)))
    );
    assert_eq!(listening_addr("starting"), None);
}

xcord_store::on_both_backends!(
    settings_from_the_environment_take_effect,
    a_low_descriptor_limit_caps_connections_and_health_still_answers,
    a_gateway_session_survives_sigterm_and_a_restart,
);

/// Two settings the README documented were once read only from the file; started as an
/// operator starts it, with nothing but environment variables, the binary honours both.
async fn settings_from_the_environment_take_effect(backend: Backend) {
    use serde_json::json;
    let db = xcord_store::testing::TestDatabase::new(backend)
        .await
        .expect("test database");
    let dir = tempfile::tempdir().expect("dir");
    let base = [
        ("XCORD_DATABASE_URL", db.url()),
        ("XCORD_PASSWORD_HASH", "bcrypt:4"),
        ("XCORD_RATE_LIMITS", "off"),
    ];
    let client = reqwest::Client::new();
    let register = |addr: SocketAddr, name: &'static str| {
        let client = &client;
        async move {
            let (status, body) = post_json(
                client,
                addr,
                "/auth/register",
                None,
                json!({"email": format!("{name}@example.com"), "username": name, "password": "Secret123"}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            body["accessToken"].as_str().expect("token").to_owned()
        }
    };

    // First run: an owner makes the community server.
    let mut first = start(dir.path(), &base, &[]);
    let owner = register(first.addr, "envowner").await;
    let (status, server) = post_json(
        &client,
        first.addr,
        "/servers",
        Some(&owner),
        json!({"name": "Hype Community"}),
    )
    .await;
    assert_eq!(status, 201, "{server}");
    let server_id = server["id"].as_str().expect("id").to_owned();
    let channel = server["channels"][0]["id"]
        .as_str()
        .expect("channel")
        .to_owned();
    signal(&first.child, "TERM");
    assert_eq!(wait_exit(&mut first.child, Duration::from_secs(20)), 0);

    // Second run: the server is the default one and attachments are capped at 1000 bytes.
    let mut env = base.to_vec();
    env.push(("XCORD_DEFAULT_SERVER_ID", &server_id));
    env.push(("XCORD_ATTACHMENT_MAX_BYTES", "1000"));
    let mut second = start(dir.path(), &env, &[]);
    let newcomer = register(second.addr, "envnewcomer").await;
    let mine: serde_json::Value = client
        .get(format!("http://{}/api/v1/servers", second.addr))
        .bearer_auth(&newcomer)
        .send()
        .await
        .expect("servers")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["servers"][0]["id"], server_id.as_str(), "{mine}");
    let upload = |size: usize| {
        let part = reqwest::multipart::Part::bytes(vec![b'x'; size])
            .file_name("notes.txt")
            .mime_str("text/plain")
            .expect("mime");
        client
            .post(format!(
                "http://{}/api/v1/channels/{channel}/attachments",
                second.addr
            ))
            .bearer_auth(&newcomer)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    let small = upload(900).await.expect("upload");
    assert_eq!(small.status().as_u16(), 201);
    let big = upload(2000).await.expect("upload");
    assert_eq!(big.status().as_u16(), 413);
    let body: serde_json::Value = big.json().await.expect("json");
    assert_eq!(body["error"], "Payload Too Large", "{body}");
    signal(&second.child, "TERM");
    assert_eq!(wait_exit(&mut second.child, Duration::from_secs(20)), 0);
}

/// Started under a soft limit of 256 descriptors, the server caps its connections below it
/// (256 less a reserve of 64): a flood of 400 idle sockets neither starves it of
/// descriptors (EMFILE) nor keeps `/health` out, and it still shuts down cleanly.
async fn a_low_descriptor_limit_caps_connections_and_health_still_answers(backend: Backend) {
    use tokio::io::AsyncWriteExt as _;
    let db = xcord_store::testing::TestDatabase::new(backend)
        .await
        .expect("test database");
    let dir = tempfile::tempdir().expect("dir");
    // A shell lowers the limit, then becomes the server.
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir.path()).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" serve")
        .arg(BIN)
        .env("XCORD_DATABASE_URL", db.url())
        .env("XCORD_DATABASE_MAX_CONNECTIONS", "4");
    let mut server = launch(cmd, &[]);
    let mut flood = Vec::new();
    for i in 0..400 {
        let Ok(mut s) = tokio::net::TcpStream::connect(server.addr).await else {
            break;
        };
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\n").await;
        }
        flood.push(s);
    }
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(5), get_json(server.addr, "/health"))
            .await
            .expect("/health answered within 5 s");
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("OK")),
        "{body}"
    );
    drop(flood);
    signal(&server.child, "TERM");
    assert_eq!(wait_exit(&mut server.child, Duration::from_secs(20)), 0);
    let log: Vec<String> = server.lines.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("connection cap")),
        "no word of the cap in the log: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("cannot accept")),
        "the server ran out of descriptors: {log:#?}"
    );
}

/// SIGTERM with a client connected, messages posted after the restart, RESUME on the
/// restarted process: every message of the gap arrives once, in order, numbered on.
async fn a_gateway_session_survives_sigterm_and_a_restart(backend: Backend) {
    use serde_json::{Value, json};
    use xcord_testkit::ws::{GatewayClient, Incoming};
    let db = xcord_store::testing::TestDatabase::new(backend)
        .await
        .expect("test database");
    let dir = tempfile::tempdir().expect("dir");
    let env = [
        ("XCORD_DATABASE_URL", db.url()),
        ("XCORD_PASSWORD_HASH", "bcrypt:4"),
        ("XCORD_RATE_LIMITS", "off"),
    ];
    let client = reqwest::Client::new();
    let call = |addr: SocketAddr, path: String, token: Option<String>, body: Value| {
        let client = &client;
        async move {
            let (status, v) = post_json(client, addr, &path, token.as_deref(), body).await;
            assert!((200..300).contains(&status), "{path}: {status} {v}");
            v
        }
    };
    let mut first = start(dir.path(), &env, &[]);
    let addr = first.addr;
    let mut users = Vec::new();
    for name in ["sig_ann", "sig_bob"] {
        let r = call(
            addr,
            "/auth/register".into(),
            None,
            json!({"email": format!("{name}@example.com"), "username": name, "password": "Secret123"}),
        )
        .await;
        users.push((
            r["userId"].as_str().expect("id").to_owned(),
            r["accessToken"].as_str().expect("token").to_owned(),
        ));
    }
    let (ann, bob) = (&users[0], &users[1]);
    let dm = call(
        addr,
        "/users/@me/dm-channels".into(),
        Some(ann.1.clone()),
        json!({"recipientId": bob.0}),
    )
    .await["id"]
        .as_str()
        .expect("dm")
        .to_owned();
    let (mut bob_ws, _) = GatewayClient::connect(addr, &bob.1).await;
    let say = |addr: SocketAddr, text: String| {
        call(
            addr,
            format!("/channels/{dm}/messages"),
            Some(ann.1.clone()),
            json!({"content": text}),
        )
    };
    say(addr, "before".into()).await;
    assert_eq!(bob_ws.dispatch("MESSAGE_CREATE").await["content"], "before");
    let (session, seq) = (bob_ws.session_id.clone().expect("session"), bob_ws.last_seq);

    signal(&first.child, "TERM");
    let mut code = None;
    for _ in 0..100 {
        if let Some(Incoming::Closed(c)) = bob_ws.next_within(Duration::from_secs(10)).await {
            code = c;
            break;
        }
    }
    assert_eq!(code, Some(1012), "op 7 then 1012 on SIGTERM");
    assert_eq!(wait_exit(&mut first.child, Duration::from_secs(20)), 0);

    let second = start(dir.path(), &env, &[]);
    let mut posted = Vec::new();
    for n in 0..3 {
        posted.push(say(second.addr, format!("gap {n}")).await["id"].clone());
    }
    let (mut back, _) = GatewayClient::open(second.addr, "/api/ws").await;
    back.send(json!({"op": 6, "d": {"token": bob.1, "sessionId": session, "seq": seq}}))
        .await;
    let mut got = Vec::new();
    for expected in seq + 1..seq + 100 {
        let f = back.frame().await;
        assert_ne!(f["op"], 9, "not resumed after the restart");
        assert_eq!(f["s"].as_u64(), Some(expected), "numbered on: {f}");
        if f["t"] == "RESUMED" {
            break;
        }
        if f["t"] == "MESSAGE_CREATE" {
            got.push(f["d"]["id"].clone());
        }
    }
    assert_eq!(got, posted);
}
