//! Connection-level limits (docs/architecture.md, "Connections"): idle and half-sent
//! connections time out, a flood of them cannot lock out `/health` or live gateway
//! sessions, a gateway socket must identify in time, a body that never arrives is the
//! client's fault (408), and errors below the router carry the JSON body where they can.
//! Raw TCP throughout, since HTTP clients cannot send what these tests send.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use xcord_testkit::ws::{GatewayClient, Incoming};
use xcord_testkit::{Backend, TestAppBuilder, on_both_backends};

on_both_backends!(
    idle_and_half_sent_connections_time_out,
    a_flood_of_idle_connections_does_not_lock_out_health_or_sessions,
    a_gateway_socket_must_identify_in_time,
    a_body_that_never_arrives_is_408_and_a_slow_handler_stays_503,
    errors_below_the_router_carry_the_json_body_where_they_can,
);

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: String,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Reads one response (head and a Content-Length body) within five seconds; `None` when
/// the connection closed first.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let mut r = RawResponse {
                status,
                head,
                body: String::new(),
            };
            let len: usize = r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = buf[end + 4..].to_vec();
            while body.len() < len {
                let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            r.body = String::from_utf8_lossy(&body).into_owned();
            return Some(r);
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("no response within five seconds")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `bytes` on a new connection and reads the answer.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (RawResponse, TcpStream) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let r = read_response(&mut s).await.expect("a response");
    (r, s)
}

/// Whether the server closes `stream` within `wait` (reads and drops any data).
async fn closes_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

const HEALTH: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n";

async fn idle_and_half_sent_connections_time_out(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| {
            c.header_read_timeout_secs = 1;
            c.keepalive_idle_secs = 3;
        })
        .spawn()
        .await;
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut half = TcpStream::connect(app.addr).await.expect("connect");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .expect("write");
    let (first, mut kept) = exchange(app.addr, HEALTH).await;
    assert_eq!(first.status, 200, "{first:?}");
    let answered = Instant::now();

    // Neither finished a request head within the header-read timeout: both are closed.
    assert!(
        !closes_within(&mut silent, Duration::from_millis(300)).await,
        "closed long before the header-read timeout"
    );
    assert!(
        closes_within(&mut silent, Duration::from_secs(3)).await,
        "a silent connection was kept"
    );
    assert!(
        closes_within(&mut half, Duration::from_secs(3)).await,
        "a half-sent request head was kept"
    );

    // A keep-alive connection may rest longer than the header timeout between requests...
    tokio::time::sleep_until(answered + Duration::from_millis(1500)).await;
    kept.write_all(HEALTH).await.expect("write");
    let second = read_response(&mut kept).await.expect("keep-alive reused");
    assert_eq!(second.status, 200);
    let answered = Instant::now();
    assert!(
        !closes_within(&mut kept, Duration::from_secs(2)).await,
        "an idle keep-alive connection was cut at the header-read timeout"
    );
    // ...but not longer than the idle timeout.
    assert!(
        closes_within(&mut kept, Duration::from_secs(3)).await,
        "an idle keep-alive connection was kept past the idle timeout"
    );
    assert!(answered.elapsed() >= Duration::from_millis(2900));
}

async fn a_flood_of_idle_connections_does_not_lock_out_health_or_sessions(backend: Backend) {
    const CAP: usize = 12;
    let app = TestAppBuilder::new(backend)
        .configure(|c| {
            // Long enough that only eviction, not the timeout, can explain a close below.
            c.header_read_timeout_secs = 30;
            c.max_connections = Some(CAP);
        })
        .spawn()
        .await;
    let user = app.register("steady").await;
    let (mut session, _) = app.gateway_as(&user).await;
    let started = Instant::now();

    // Three times the cap of sockets that send nothing or half a request line.
    let mut flood = Vec::new();
    for i in 0..3 * CAP {
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        if i % 2 == 1 {
            s.write_all(b"GET /health HTTP/1.1\r\n")
                .await
                .expect("write");
        }
        flood.push(s);
    }
    // A new client still gets its answer...
    let (health, _) = exchange(app.addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["status"], "OK");
    // ...because the oldest idle sockets made room, long before any timeout.
    let mut closed = 0;
    for s in &mut flood {
        if closes_within(s, Duration::from_millis(100)).await {
            closed += 1;
        }
    }
    assert!(closed >= 2 * CAP, "only {closed} idle sockets were evicted");
    assert!(started.elapsed() < Duration::from_secs(25));
    // Metrics answer too, and count what happened.
    let (metrics, _) = exchange(app.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics.body.contains("http_connections_evicted_total"),
        "{}",
        metrics.body
    );
    // The identified session was never a candidate.
    session.heartbeat().await;
    let me = app.get_as(&user.token, "/users/@me").await;
    assert_eq!(me.status, 200, "{}", me.text);
}

async fn a_gateway_socket_must_identify_in_time(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| {
            c.gateway_identify_secs = 1;
            c.gateway_heartbeat_ms = 1000;
        })
        .spawn()
        .await;
    // Heartbeating does not buy time.
    let (mut stalling, _) = GatewayClient::open(app.addr, "/api/ws").await;
    let opened = Instant::now();
    let mut acks = 0;
    let code = loop {
        assert!(opened.elapsed() < Duration::from_secs(5), "never closed");
        stalling.send(json!({"op": 1, "d": null})).await;
        match stalling.next_within(Duration::from_millis(200)).await {
            Some(Incoming::Frame(f)) if f["op"] == 2 => acks += 1,
            Some(Incoming::Closed(code)) => break code,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(4003));
    assert!(acks >= 2, "heartbeats were not answered meanwhile");
    assert!(opened.elapsed() >= Duration::from_millis(900));

    // A silent socket is closed with the same code.
    let (mut silent, _) = GatewayClient::open(app.addr, "/gateway").await;
    assert_eq!(silent.closed().await, Some(4003));

    // One that identifies in time stays past the deadline.
    let user = app.register("prompt").await;
    let (mut prompt, _) = app.gateway_as(&user).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        prompt.heartbeat().await;
    }
}

async fn a_body_that_never_arrives_is_408_and_a_slow_handler_stays_503(backend: Backend) {
    let app = TestAppBuilder::new(backend)
        .configure(|c| {
            c.request_timeout_secs = 1;
            // Hashing at this cost takes longer than the timeout: a slow handler.
            c.password_hash = xcord::config::PasswordHash::Bcrypt(15);
        })
        .spawn()
        .await;
    let (stalled, mut s) = exchange(
        app.addr,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"username\":",
    )
    .await;
    assert_eq!(stalled.status, 408, "{stalled:?}");
    assert_eq!(stalled.json()["error"], "Request Timeout", "{stalled:?}");
    assert!(stalled.json()["message"].as_str().is_some());
    assert!(stalled.header("x-request-id").is_some());
    assert!(closes_within(&mut s, Duration::from_secs(2)).await);

    let slow = app
        .post_api(
            "/auth/register",
            &json!({"email": "slow@example.com", "username": "slow", "password": "Secret123"}),
        )
        .await;
    slow.assert_error(503, "Service Unavailable");
}

async fn errors_below_the_router_carry_the_json_body_where_they_can(backend: Backend) {
    let app = TestAppBuilder::new(backend).spawn().await;

    let long_target = format!(
        "GET /api/v1/users/search?q={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let (r, _) = exchange(app.addr, long_target.as_bytes()).await;
    assert_eq!(r.status, 414, "{r:?}");
    assert_eq!(r.json()["error"], "URI Too Long", "{r:?}");
    assert!(r.json()["message"].as_str().is_some());

    let mut big_head = String::from("GET /health HTTP/1.1\r\nHost: t\r\n");
    for i in 0..20 {
        big_head.push_str(&format!("X-Filler-{i}: {}\r\n", "b".repeat(2000)));
    }
    big_head.push_str("\r\n");
    let (r, _) = exchange(app.addr, big_head.as_bytes()).await;
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(
        r.json()["error"],
        "Request Header Fields Too Large",
        "{r:?}"
    );

    // What hyper refuses before any of our code runs: the status is right, the body is
    // empty (docs/architecture.md says why), and the connection closes.
    let mut huge_head = String::from("GET /health HTTP/1.1\r\nHost: t\r\n");
    for i in 0..40 {
        huge_head.push_str(&format!("X-Filler-{i}: {}\r\n", "c".repeat(2000)));
    }
    huge_head.push_str("\r\n");
    for (what, bytes, status) in [
        ("a head past the buffer", huge_head.into_bytes(), 431),
        (
            "an invalid Content-Length",
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a broken request line",
            b"NOT AN HTTP REQUEST\r\n\r\n".to_vec(),
            400,
        ),
    ] {
        let (r, mut s) = exchange(app.addr, &bytes).await;
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert!(r.body.is_empty(), "{what}: {r:?}");
        assert!(
            closes_within(&mut s, Duration::from_secs(2)).await,
            "{what}: left open"
        );
    }
}
