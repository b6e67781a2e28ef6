//! Test support: [`spawn_app`] starts the real service on a free port with a fresh database
//! of the chosen backend and its own data directory, and hands back an HTTP client for it.

pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xcord::{Application, Config};
use xcord_api::AppState;
use xcord_core::storage::FileStore;
use xcord_core::{Clock, SystemClock};
pub use xcord_store::Backend;
pub use xcord_store::on_both_backends;
use xcord_store::testing::TestDatabase;

/// A running server for one test. Stops when dropped.
pub struct TestApp {
    /// The bound address.
    pub addr: SocketAddr,
    /// An HTTP client (no redirects followed, so tests see them).
    pub client: reqwest::Client,
    /// The server's shared state (store, bus, clock).
    pub state: AppState,
    /// The configuration it runs with.
    pub config: Config,
    /// The gateway, when the node runs that role (every role runs unless configured).
    pub gateway: Option<Arc<xcord_gateway::Gateway>>,
    /// The database this app created (`None` for a node joined to another's).
    _db: Option<TestDatabase>,
    backend: Backend,
    data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts a server on `backend` with test defaults.
pub async fn spawn_app(backend: Backend) -> TestApp {
    TestAppBuilder::new(backend).spawn().await
}

/// A change to the test configuration.
type ConfigEdit = Box<dyn FnOnce(&mut Config)>;

/// Configures a [`TestApp`] before it starts.
pub struct TestAppBuilder {
    backend: Backend,
    clock: Arc<dyn Clock>,
    configure: Vec<ConfigEdit>,
    shared_database: Option<String>,
    secrets_from: Option<std::path::PathBuf>,
    files: Option<Arc<dyn FileStore>>,
}

impl TestAppBuilder {
    /// A builder for `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            clock: Arc::new(SystemClock),
            configure: Vec::new(),
            shared_database: None,
            secrets_from: None,
            files: None,
        }
    }

    /// Changes the configuration (applied after the test defaults).
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Runs as another node of `app`'s deployment: the same database and the same secret
    /// files (JWT, sealing and attachment keys), as docs/gateway.md tells operators to do;
    /// the caller adds the shared Redis. The first app owns and drops the database.
    pub fn joining(mut self, app: &TestApp) -> Self {
        self.shared_database = app.config.database_url.clone();
        self.secrets_from = Some(app.data_dir().to_path_buf());
        self
    }

    /// Keeps uploaded files in `files` instead of the data directory.
    pub fn files(mut self, files: Arc<dyn FileStore>) -> Self {
        self.files = Some(files);
        self
    }

    /// Uses `clock` instead of the wall clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts the server. Panics (failing the test) when it cannot start: a test never
    /// passes by skipping its backend.
    pub async fn spawn(self) -> TestApp {
        let (db, url) = match self.shared_database {
            Some(url) => (None, url),
            None => {
                let db = TestDatabase::new(self.backend).await.unwrap_or_else(|e| {
                    panic!("cannot create a {:?} test database: {e:#}", self.backend)
                });
                let url = db.url().to_owned();
                (Some(db), url)
            }
        };
        let data_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        if let Some(from) = &self.secrets_from {
            for name in ["jwt_secret", "secret_key", "cdn_key"] {
                std::fs::copy(from.join(name), data_dir.path().join(name))
                    .unwrap_or_else(|e| panic!("cannot share {name}: {e}"));
            }
        }
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.path().to_path_buf(),
            database_url: Some(url),
            database_max_connections: 5,
            // Suites make many calls quickly; rate-limit tests turn limits back on.
            rate_limits: false,
            password_hash: "bcrypt:4"
                .parse()
                .unwrap_or(xcord::config::PasswordHash::Bcrypt(4)),
            ..Config::default()
        };
        for f in self.configure {
            f(&mut config);
        }
        let app = match self.files {
            Some(files) => Application::build_with(&config, self.clock, files).await,
            None => Application::build_with_clock(&config, self.clock).await,
        }
        .unwrap_or_else(|e| panic!("the server did not start: {e:#}"));
        let addr = app.local_addr();
        let state = app.state().clone();
        let gateway = app.gateway().cloned();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"));
        TestApp {
            addr,
            client,
            state,
            config,
            gateway,
            _db: db,
            backend: self.backend,
            data_dir,
            shutdown,
            handle: Some(handle),
        }
    }
}

/// A response with its body read: status, headers and JSON (or `Value::String` for text).
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body as JSON, a JSON string for non-JSON text, or null when empty.
    pub body: Value,
    /// The raw body text.
    pub text: String,
}

impl TestResponse {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts that a fixture step (`what`) answered `status`, panicking with the status and
    /// the body otherwise, so a test that builds on a failed step says why at once instead
    /// of failing later on an empty id. Returns the response for reading.
    #[track_caller]
    pub fn expect_status(&self, status: u16, what: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} with {}",
            self.status, self.text
        );
        self
    }

    /// The string at the JSON pointer `pointer` (`/id`, `/channels/0/id`); panics with the
    /// status and the body when it is missing or not a string.
    #[track_caller]
    pub fn str_at(&self, pointer: &str) -> String {
        match self.body.pointer(pointer).and_then(Value::as_str) {
            Some(s) => s.to_owned(),
            None => panic!(
                "no string at {pointer} in the {} response: {}",
                self.status, self.text
            ),
        }
    }

    /// The integer at the JSON pointer `pointer`; panics with the status and the body when
    /// it is missing or not an integer.
    #[track_caller]
    pub fn i64_at(&self, pointer: &str) -> i64 {
        match self.body.pointer(pointer).and_then(Value::as_i64) {
            Some(n) => n,
            None => panic!(
                "no integer at {pointer} in the {} response: {}",
                self.status, self.text
            ),
        }
    }

    /// Asserts the SPEC §3 error shape with this short name.
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.body["error"], error, "body: {}", self.text);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.text
        );
    }
}

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// User id.
    pub id: String,
    /// Access token.
    pub token: String,
    /// Refresh token.
    pub refresh: String,
}

impl TestUser {
    /// From a login or register answer; panics naming the missing field and the body.
    #[track_caller]
    pub fn from_login(body: &Value) -> Self {
        let field = |k: &str| {
            body[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {body}"))
                .to_owned()
        };
        let id = body["user"]["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| field("userId"));
        Self {
            id,
            token: field("accessToken"),
            refresh: field("refreshToken"),
        }
    }
}

/// The string at the JSON pointer `pointer` of `value` (a message [`say`] returned, an
/// element of a list); panics with the value when it is missing or not a string.
#[track_caller]
pub fn string_at(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer).and_then(Value::as_str) {
        Some(s) => s.to_owned(),
        None => panic!("no string at {pointer} in {value}"),
    }
}

/// The token a mail carries after `label: `.
pub fn token_in_mail(mail: &str, label: &str) -> String {
    let start = mail
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {mail}"))
        + label.len();
    mail[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

impl TestApp {
    /// A gateway connection identified as `user`, with CONNECTED's `d`.
    pub async fn gateway_as(&self, user: &TestUser) -> (ws::GatewayClient, Value) {
        ws::GatewayClient::connect(self.addr, &user.token).await
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The test database's backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Sends a request with an optional JSON body and bearer token.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> TestResponse {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::read(
            req.send()
                .await
                .unwrap_or_else(|e| panic!("request to {path} failed: {e}")),
        )
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, None, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> TestResponse {
        self.request(Method::POST, path, Some(body), None).await
    }

    /// `GET /api/v1{path}` as the holder of `token`.
    pub async fn get_as(&self, token: &str, path: &str) -> TestResponse {
        self.request(Method::GET, &format!("/api/v1{path}"), None, Some(token))
            .await
    }

    /// `POST /api/v1{path}` with a JSON body as the holder of `token`.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> TestResponse {
        self.request(
            Method::POST,
            &format!("/api/v1{path}"),
            Some(body),
            Some(token),
        )
        .await
    }

    /// `PATCH /api/v1{path}` with a JSON body as the holder of `token`.
    pub async fn patch_as(&self, token: &str, path: &str, body: &Value) -> TestResponse {
        self.request(
            Method::PATCH,
            &format!("/api/v1{path}"),
            Some(body),
            Some(token),
        )
        .await
    }

    /// `PUT /api/v1{path}` with a JSON body as the holder of `token`.
    pub async fn put_as(&self, token: &str, path: &str, body: &Value) -> TestResponse {
        self.request(
            Method::PUT,
            &format!("/api/v1{path}"),
            Some(body),
            Some(token),
        )
        .await
    }

    /// `DELETE /api/v1{path}` as the holder of `token`.
    pub async fn delete_as(&self, token: &str, path: &str) -> TestResponse {
        self.request(Method::DELETE, &format!("/api/v1{path}"), None, Some(token))
            .await
    }

    /// `POST /api/v1{path}` with a JSON body and no token.
    pub async fn post_api(&self, path: &str, body: &Value) -> TestResponse {
        self.request(Method::POST, &format!("/api/v1{path}"), Some(body), None)
            .await
    }

    /// Registers `name` (e-mail `name@example.com`, password `Secret123`) and returns the
    /// new account.
    pub async fn register(&self, name: &str) -> TestUser {
        let res = self
            .post_api(
                "/auth/register",
                &serde_json::json!({"email": format!("{name}@example.com"), "username": name, "password": "Secret123"}),
            )
            .await;
        assert_eq!(res.status, 201, "register {name}: {}", res.text);
        TestUser::from_login(&res.body)
    }

    /// Logs `login` in with `password`; panics unless it succeeds without 2FA.
    pub async fn login(&self, login: &str, password: &str) -> TestUser {
        let res = self
            .post_api(
                "/auth/login",
                &serde_json::json!({"username": login, "password": password}),
            )
            .await;
        assert_eq!(res.status, 200, "login {login}: {}", res.text);
        TestUser::from_login(&res.body)
    }

    /// The messages in the mail outbox, oldest first (none before the first is written).
    pub fn outbox(&self) -> Vec<String> {
        let dir = self.data_dir().join("outbox");
        let entries = match std::fs::read_dir(&dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        };
        let mut files: Vec<_> = entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                    .path()
            })
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
            })
            .collect()
    }

    /// Waits (up to 5 s) for an outbox message to `to` containing `needle`, and returns it.
    pub async fn wait_for_mail(&self, to: &str, needle: &str) -> String {
        for _ in 0..100 {
            if let Some(m) = self
                .outbox()
                .into_iter()
                .rev()
                .find(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
            {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "no mail to {to} containing {needle:?}; outbox: {:#?}",
            self.outbox()
        );
    }

    /// Reads a response fully.
    pub async fn read(res: reqwest::Response) -> TestResponse {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res
            .text()
            .await
            .unwrap_or_else(|e| panic!("the {status} response body could not be read: {e}"));
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    /// Stops the server gracefully (as SIGTERM does) but keeps its database and data
    /// directory, so that a node started with [`TestAppBuilder::joining`] takes its place.
    pub async fn shut_down(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }

    /// Stops the server and waits for it to finish; returns its result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after ten seconds.
pub async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the condition did not hold within ten seconds"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A server with an owner and one member who joined by invite.
#[derive(Debug, Clone)]
pub struct Room {
    /// The owner.
    pub owner: TestUser,
    /// A member.
    pub member: TestUser,
    /// The server id.
    pub server: String,
    /// Its first text channel.
    pub channel: String,
}

/// Registers `{prefix}_owner` and `{prefix}_member` and builds a [`Room`].
pub async fn room(app: &TestApp, prefix: &str) -> Room {
    let owner = app.register(&format!("{prefix}_owner")).await;
    let member = app.register(&format!("{prefix}_member")).await;
    let s = app
        .post_as(
            &owner.token,
            "/servers",
            &json!({"name": format!("{prefix} room")}),
        )
        .await;
    s.expect_status(201, "create the room's server");
    let server = s.str_at("/id");
    let channel = s.str_at("/channels/0/id");
    let code = app
        .post_as(
            &owner.token,
            &format!("/servers/{server}/invites"),
            &json!({}),
        )
        .await
        .expect_status(201, "create an invite to the room")
        .str_at("/code");
    app.post_as(&member.token, &format!("/invites/{code}"), &json!({}))
        .await
        .expect_status(200, "join the room");
    Room {
        owner,
        member,
        server,
        channel,
    }
}

/// Posts `text` to `channel` as `who`; asserts 201 and returns the message.
pub async fn say(app: &TestApp, who: &TestUser, channel: &str, text: &str) -> Value {
    let r = app
        .post_as(
            &who.token,
            &format!("/channels/{channel}/messages"),
            &json!({"content": text}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}
