//! Test support: [`spawn_app`] starts the real service on a free port with a fresh database
//! of the chosen backend and its own data directory, and hands back an HTTP client for it.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xcord::{Application, Config};
use xcord_api::AppState;
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
    db: TestDatabase,
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
}

impl TestAppBuilder {
    /// A builder for `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            clock: Arc::new(SystemClock),
            configure: Vec::new(),
        }
    }

    /// Changes the configuration (applied after the test defaults).
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + 'static) -> Self {
        self.configure.push(Box::new(f));
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
        let db = TestDatabase::new(self.backend)
            .await
            .unwrap_or_else(|e| panic!("cannot create a {:?} test database: {e:#}", self.backend));
        let data_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.path().to_path_buf(),
            database_url: Some(db.url().to_owned()),
            database_max_connections: 5,
            password_hash: "bcrypt:4"
                .parse()
                .unwrap_or(xcord::config::PasswordHash::Bcrypt(4)),
            ..Config::default()
        };
        for f in self.configure {
            f(&mut config);
        }
        let app = Application::build_with_clock(&config, self.clock)
            .await
            .unwrap_or_else(|e| panic!("the server did not start: {e:#}"));
        let addr = app.local_addr();
        let state = app.state().clone();
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
            db,
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

impl TestApp {
    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The test database's backend.
    pub fn backend(&self) -> Backend {
        self.db.backend()
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

    /// Reads a response fully.
    pub async fn read(res: reqwest::Response) -> TestResponse {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
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
