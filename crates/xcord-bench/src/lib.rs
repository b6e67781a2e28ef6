//! `xcord-bench`: a load generator for an xcord server on this machine.
//!
//! One run registers members, puts them in one server, opens gateway connections from
//! several loopback source addresses, posts messages (flat out or at a fixed rate), waits
//! for every copy to arrive, then measures authenticated REST reads. It reports accepted
//! posts/s, POST latency, delivery latency from post to receipt at every member, the
//! delivered fraction and duplicates, connections held, the server's RSS and CPU (read from
//! `/proc` by pid), and REST read throughput: as a table and as JSON lines.
//!
//! It refuses targets that are not loopback, and every phase has a time limit.

pub mod gateway;
pub mod jobs;
pub mod proc;
pub mod report;
pub mod rest;
pub mod udp_floor;
pub mod voice;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub use report::{Report, Row};
pub use voice::{VoiceOptions, run_voice};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `http://127.0.0.1:PORT` (loopback only).
    pub target: String,
    /// Where gateway connections go, when not to `target` (another node of the same
    /// deployment: posts through one node, delivery through the other).
    pub gateway_target: Option<String>,
    /// The server's pid, for RSS and CPU (`None`: not reported).
    pub server_pid: Option<u32>,
    /// Members registered and joined to the server.
    pub members: usize,
    /// Gateway connections opened, spread over the members (at least one each when
    /// posting, so every member's delivery is measured).
    pub connections: usize,
    /// Messages posted.
    pub messages: usize,
    /// Members that post (round robin).
    pub senders: usize,
    /// POSTs in flight at once (flat-out mode).
    pub concurrency: usize,
    /// Messages per second in total; 0 posts flat out.
    pub rate: f64,
    /// Loopback source addresses used for gateway connections (127.0.0.1 … 127.0.0.N).
    pub sources: u8,
    /// Seconds of authenticated REST reads (0 skips the phase).
    pub read_secs: u64,
    /// Concurrent REST readers.
    pub read_clients: usize,
    /// Connection counts at which to record server memory while opening idle connections
    /// (empty: no idle phase).
    pub idle_steps: Vec<usize>,
    /// Time limit of each phase.
    pub phase_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            target: "http://127.0.0.1:3000".into(),
            gateway_target: None,
            server_pid: None,
            members: 100,
            connections: 100,
            messages: 3000,
            senders: 10,
            concurrency: 32,
            rate: 0.0,
            sources: 4,
            read_secs: 5,
            read_clients: 64,
            idle_steps: Vec::new(),
            phase_limit: Duration::from_secs(120),
        }
    }
}

/// Refuses anything but a loopback `http://` target; returns host and port.
pub fn loopback_target(url: &str) -> anyhow::Result<(IpAddr, u16)> {
    let rest = url
        .strip_prefix("http://")
        .context("the target must be http://127.0.0.1:PORT (or localhost)")?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = hostport
        .rsplit_once(':')
        .context("the target must name a port")?;
    let port: u16 = port.parse().context("the target's port is not a number")?;
    let ip: IpAddr = match host.trim_matches(['[', ']']) {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .parse()
            .context("the target must be an IP address or localhost")?,
    };
    if !ip.is_loopback() {
        bail!("refusing a non-loopback target ({ip}): xcord-bench only loads this machine");
    }
    Ok((ip, port))
}

/// Runs `f` within the phase limit.
pub async fn phase<T>(
    name: &str,
    limit: Duration,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| anyhow::anyhow!("phase `{name}` exceeded its limit of {limit:?}"))?
}

/// Runs the whole benchmark and returns its report.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let (rest_ip, rest_port) = loopback_target(&opts.target)?;
    let base = format!("http://{rest_ip}:{rest_port}");
    let (ip, port) = match &opts.gateway_target {
        Some(g) => loopback_target(g)?,
        None => (rest_ip, rest_port),
    };
    let api = rest::Api::new(&base)?;
    let mut report = Report::default();
    let server = proc::Sampler::new(opts.server_pid);
    let limit = opts.phase_limit;

    let started = Instant::now();
    let world = phase(
        "setup",
        limit,
        rest::setup(&api, opts.members.max(1), opts.concurrency.max(1)),
    )
    .await?;
    report.push(
        Row::new("setup")
            .num("members", world.members.len() as f64)
            .num("secs", started.elapsed().as_secs_f64()),
    );

    if !opts.idle_steps.is_empty() {
        let rows = phase(
            "idle",
            limit,
            gateway::idle(ip, port, &world, opts.sources, &opts.idle_steps, &server),
        )
        .await?;
        for r in rows {
            report.push(r);
        }
    }

    if opts.messages > 0 {
        let n = opts.connections.max(world.members.len());
        let before = server.sample();
        let conns = phase(
            "connect",
            limit,
            gateway::connect_members(ip, port, &world, n, opts.sources),
        )
        .await?;
        let after = server.sample();
        report.push(
            Row::new("connect")
                .num("connections", conns.len() as f64)
                .opt("server_rss_mib", after.map(|s| s.rss_kib as f64 / 1024.0))
                .opt(
                    "server_kib_per_connection",
                    before
                        .zip(after)
                        .map(|(b, a)| (a.rss_kib as f64 - b.rss_kib as f64) / conns.len() as f64),
                ),
        );
        let tracker = Arc::new(gateway::Tracker::new(opts.messages, conns.len()));
        let mut readers = gateway::spawn_readers(conns, tracker.clone());
        let cpu0 = server.sample();
        let posted = phase(
            "post",
            limit,
            rest::post_messages(&api, &world, opts, tracker.clone()),
        )
        .await?;
        let delivered = phase(
            "deliver",
            limit,
            tracker.wait_all(Duration::from_millis(500)),
        )
        .await;
        let cpu1 = server.sample();
        readers.abort_all();
        let mut d = tracker.summary();
        report.push(
            posted
                .row("post")
                .opt("server_cpu_pct", proc::cpu_pct(cpu0, cpu1)),
        );
        report.push(
            Row::new("delivery")
                .num("receivers", d.receivers as f64)
                .num("expected", d.expected as f64)
                .num("delivered", d.delivered as f64)
                .num("delivered_fraction", d.fraction())
                .num("duplicates", d.duplicates as f64)
                .ms("p50_ms", d.latency.p(50.0))
                .ms("p95_ms", d.latency.p(95.0))
                .ms("p99_ms", d.latency.p(99.0))
                .ms("max_ms", d.latency.max())
                .num("complete", f64::from(u8::from(delivered.is_ok()))),
        );
    }

    if opts.read_secs > 0 {
        let cpu0 = server.sample();
        let rows = phase(
            "reads",
            limit + Duration::from_secs(opts.read_secs * 2),
            rest::reads(&api, &world, opts.read_clients.max(1), opts.read_secs),
        )
        .await?;
        let cpu1 = server.sample();
        for r in rows {
            report.push(r.opt("server_cpu_pct", proc::cpu_pct(cpu0, cpu1)));
        }
    }
    if let Some(s) = server.sample() {
        report.push(
            Row::new("server")
                .num("rss_mib", s.rss_kib as f64 / 1024.0)
                .num("threads", s.threads as f64),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(loopback_target("http://127.0.0.1:3000").is_ok());
        assert!(loopback_target("http://localhost:8080/").is_ok());
        assert!(loopback_target("http://[::1]:3000").is_ok());
        assert!(loopback_target("http://127.0.0.7:1").is_ok());
        for bad in [
            "http://10.0.0.1:3000",
            "http://example.com:80",
            "https://127.0.0.1:3000",
            "http://127.0.0.1",
            "ftp://127.0.0.1:21",
        ] {
            assert!(loopback_target(bad).is_err(), "{bad}");
        }
    }
}
