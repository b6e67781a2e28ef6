//! The REST side: members and their server, posting, and authenticated reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::Options;
use crate::gateway::Tracker;
use crate::report::{Latencies, Row};

/// An HTTP client for one target.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A registered member.
#[derive(Debug, Clone)]
pub struct Member {
    /// User id.
    pub id: String,
    /// Access token.
    pub token: String,
}

/// The members and the server they share.
#[derive(Debug, Clone)]
pub struct World {
    /// Members; the first owns the server.
    pub members: Vec<Member>,
    /// The server.
    pub server: String,
    /// Its text channel, where messages go.
    pub channel: String,
    /// Its voice channel and that channel's `userLimit` (0: none), when it has one.
    pub voice: Option<(String, u64)>,
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .timeout(Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// POSTs JSON; returns status and body.
    pub async fn post(
        &self,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(reqwest::Method::POST, token, path, body).await
    }

    /// PATCHes JSON; returns status and body.
    pub async fn patch(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(reqwest::Method::PATCH, Some(token), path, body)
            .await
    }

    /// A text page outside the API (`/metrics`).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        if !res.status().is_success() {
            bail!("GET {path} answered {}", res.status());
        }
        Ok(res.text().await?)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method.clone(), self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// GETs with a token; returns the status.
    pub async fn get_status(&self, token: &str, path: &str) -> anyhow::Result<u16> {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = res.status().as_u16();
        // Read the body so the connection goes back to the pool.
        let _ = res.bytes().await;
        Ok(status)
    }
}

pub(crate) fn must(status: u16, body: &Value, what: &str) -> anyhow::Result<()> {
    if !(200..300).contains(&status) {
        bail!(
            "{what} failed with {status}: {body} (is XCORD_RATE_LIMITS=off set on the server under test?)"
        );
    }
    Ok(())
}

/// Registers `n` members (names unique to this run), the first creates a server, and the
/// others join it by invite.
pub async fn setup(api: &Api, n: usize, concurrency: usize) -> anyhow::Result<World> {
    let run = hex::encode(rand::random::<[u8; 3]>());
    setup_named(api, &run, n, concurrency).await
}

/// [`setup`] with member names `b<run>_<i>`; `run` must be unique to this server.
pub async fn setup_named(
    api: &Api,
    run: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<World> {
    let members: Vec<Member> = futures_util::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let run = run.to_owned();
            async move {
                let name = format!("b{run}_{i}");
                let (status, body) = api
                    .post(
                        None,
                        "/auth/register",
                        &json!({"email": format!("{name}@bench.invalid"), "username": name, "password": "Bench-pass1"}),
                    )
                    .await?;
                must(status, &body, "register")?;
                Ok::<_, anyhow::Error>(Member {
                    id: body["user"]["id"].as_str().context("no user id")?.to_owned(),
                    token: body["accessToken"].as_str().context("no token")?.to_owned(),
                })
            }
        })
        .buffered(concurrency.min(64))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let owner = members.first().context("no members")?;
    let (status, s) = api
        .post(
            Some(&owner.token),
            "/servers",
            &json!({"name": format!("bench {run}")}),
        )
        .await?;
    must(status, &s, "create server")?;
    let server = s["id"].as_str().context("no server id")?.to_owned();
    let channel = s["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "text"))
        .and_then(|c| c["id"].as_str())
        .context("no text channel")?
        .to_owned();
    let voice = s["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "voice"))
        .and_then(|c| {
            Some((
                c["id"].as_str()?.to_owned(),
                c["userLimit"].as_u64().unwrap_or(0),
            ))
        });
    let (status, inv) = api
        .post(
            Some(&owner.token),
            &format!("/servers/{server}/invites"),
            &json!({"maxAgeSeconds": 0, "maxUses": 0}),
        )
        .await?;
    must(status, &inv, "create invite")?;
    let code = inv["code"].as_str().context("no invite code")?.to_owned();
    let joins: Vec<anyhow::Result<()>> = futures_util::stream::iter(members.iter().skip(1))
        .map(|m| {
            let api = api.clone();
            let code = code.clone();
            async move {
                let (status, body) = api
                    .post(Some(&m.token), &format!("/invites/{code}"), &json!({}))
                    .await?;
                must(status, &body, "join")
            }
        })
        .buffered(concurrency.min(64))
        .collect()
        .await;
    joins.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(World {
        members,
        server,
        channel,
        voice,
    })
}

/// What posting measured.
#[derive(Debug)]
pub struct Posted {
    /// Messages accepted (201).
    pub accepted: usize,
    /// Refused or failed.
    pub failed: usize,
    /// Wall time from the first POST to the last answer.
    pub elapsed: Duration,
    /// POST latencies.
    pub latency: Latencies,
}

impl Posted {
    /// As a result row.
    pub fn row(mut self, phase: &str) -> Row {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        Row::new(phase)
            .num("accepted", self.accepted as f64)
            .num("failed", self.failed as f64)
            .num("posts_per_sec", self.accepted as f64 / secs)
            .ms("post_p50_ms", self.latency.p(50.0))
            .ms("post_p95_ms", self.latency.p(95.0))
            .ms("post_p99_ms", self.latency.p(99.0))
    }
}

/// Posts `opts.messages` messages `b:<index>` from `opts.senders` members: flat out with
/// `opts.concurrency` in flight, or paced at `opts.rate` per second.
pub async fn post_messages(
    api: &Api,
    world: &World,
    opts: &Options,
    tracker: Arc<Tracker>,
) -> anyhow::Result<Posted> {
    let total = opts.messages;
    let senders = opts.senders.clamp(1, world.members.len());
    let workers = if opts.rate > 0.0 {
        // Enough in flight that pacing, not latency, sets the rate.
        ((opts.rate * 0.05).ceil() as usize).clamp(4, 256)
    } else {
        opts.concurrency.max(1)
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let path = format!("/channels/{}/messages", world.channel);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (api, next, tracker, path) = (api.clone(), next.clone(), tracker.clone(), path.clone());
        let members = world.members[..senders].to_vec();
        let rate = opts.rate;
        tasks.spawn(async move {
            let mut lat = Latencies::default();
            let (mut ok, mut failed) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let who = &members[i % members.len()];
                let t0 = Instant::now();
                tracker.sent(i, t0);
                match api
                    .post(
                        Some(&who.token),
                        &path,
                        &json!({"content": format!("b:{i}")}),
                    )
                    .await
                {
                    Ok((201, _)) => {
                        ok += 1;
                        lat.add(t0.elapsed());
                    }
                    _ => {
                        failed += 1;
                        tracker.failed(i);
                    }
                }
            }
            (ok, failed, lat)
        });
    }
    let mut out = Posted {
        accepted: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency: Latencies::default(),
    };
    while let Some(r) = tasks.join_next().await {
        let (ok, failed, lat) = r?;
        out.accepted += ok;
        out.failed += failed;
        out.latency.merge(lat);
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// `clients` readers for `secs` seconds on `GET /users/@me`, then on a history page.
pub async fn reads(
    api: &Api,
    world: &World,
    clients: usize,
    secs: u64,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, path) in [
        ("read_me", "/users/@me".to_owned()),
        (
            "read_history",
            format!("/channels/{}/messages?limit=50", world.channel),
        ),
    ] {
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let api = api.clone();
            let token = world.members[c % world.members.len()].token.clone();
            let path = path.clone();
            tasks.spawn(async move {
                let mut lat = Latencies::default();
                let mut errors = 0usize;
                while Instant::now() < until {
                    let t0 = Instant::now();
                    match api.get_status(&token, &path).await {
                        Ok(200) => lat.add(t0.elapsed()),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            });
        }
        let mut lat = Latencies::default();
        let mut errors = 0;
        while let Some(r) = tasks.join_next().await {
            let (l, e) = r?;
            lat.merge(l);
            errors += e;
        }
        let elapsed = start.elapsed().as_secs_f64();
        rows.push(
            Row::new(name)
                .num("clients", clients as f64)
                .num("requests", lat.len() as f64)
                .num("errors", errors as f64)
                .num("reads_per_sec", lat.len() as f64 / elapsed)
                .ms("p50_ms", lat.p(50.0))
                .ms("p95_ms", lat.p(95.0))
                .ms("p99_ms", lat.p(99.0)),
        );
    }
    Ok(rows)
}
