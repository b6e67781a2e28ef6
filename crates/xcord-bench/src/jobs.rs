//! `xcord-bench jobs`: the durable job queue under load, measured on a running server.
//!
//! The tool writes `noop` jobs (which do nothing when run) straight into the server's
//! database, as use-cases enqueue them, and the server's `jobs` role runs them. Two phases:
//! - **burst**: N jobs all due at one instant; completed jobs/s is N over the time from
//!   that instant to the last job's end (the queue's throughput);
//! - **paced**: jobs due at a steady rate over a window; due → done latency (p50, p99)
//!   of each job, from the `finished_at` the server records.
//!
//! Enqueueing is timed too (jobs/s written, in transactions of `--batch`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::Row as _;
use xcord_store::{NewJob, Store, StoreOptions};
use xcord_types::{SnowflakeGenerator, Timestamp};

use crate::proc::{Sampler, cpu_pct};
use crate::report::{Report, Row};

/// What to run.
#[derive(Debug, Clone)]
pub struct JobsOptions {
    /// The server's database (the same URL it runs on).
    pub database_url: String,
    /// The server's pid, for its CPU.
    pub server_pid: Option<u32>,
    /// Jobs in the burst.
    pub burst: usize,
    /// Jobs per second in the paced phase (0 skips it).
    pub rate: usize,
    /// Seconds of the paced phase.
    pub secs: u64,
    /// Jobs per enqueueing transaction.
    pub batch: usize,
    /// Time limit of each phase.
    pub phase_limit: Duration,
}

/// How long before their due time jobs are written (more than the workers' 5 s idle look).
const LEAD_MS: i64 = 6000;
/// The kind the server runs as a no-op.
const NOOP: &str = "noop";

fn ms_now() -> i64 {
    Timestamp::now().as_millis()
}

/// Writes jobs due at `due(i)` in transactions of `batch`; returns how long it took.
async fn enqueue(
    store: &Store,
    ids: &SnowflakeGenerator,
    n: usize,
    batch: usize,
    tag: &str,
    due: impl Fn(usize) -> i64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let count = batch.min(n - i);
        let chunk: Vec<NewJob> = (i..i + count)
            .map(|k| {
                let id = ids.next_id();
                NewJob {
                    id,
                    kind: NOOP.into(),
                    key: format!("bench:{tag}:{id}"),
                    payload: "{}".into(),
                    due_at: Timestamp::from_millis(due(k)),
                }
            })
            .collect();
        let mut tx = store.begin_write().await?;
        store
            .enqueue_jobs(&mut tx, &chunk, Timestamp::now())
            .await?;
        tx.commit().await?;
        i += count;
    }
    Ok(started.elapsed())
}

/// Waits until no `noop` job of `tag` is waiting or running.
async fn wait_done(store: &Store, tag: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left: i64 = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'noop' AND job_key LIKE $1 AND state IN ('waiting', 'running')",
        )
        .bind(format!("bench:{tag}:%"))
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{left} jobs of {tag} still open after {limit:?}: is the server's jobs role running on this database?"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (due_at, finished_at) of the done jobs of `tag`.
async fn timings(store: &Store, tag: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT due_at, finished_at FROM jobs WHERE job_key LIKE $1 AND state = 'done'",
    )
    .bind(format!("bench:{tag}:%"))
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let due: i64 = r.try_get(0)?;
        let done: Option<i64> = r.try_get(1)?;
        if let Some(done) = done {
            out.push((due, done));
        }
    }
    Ok(out)
}

fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|v| *v as f64)
}

/// Runs both phases and removes the jobs it wrote.
pub async fn run_jobs(o: &JobsOptions) -> anyhow::Result<Report> {
    if o.batch == 0 || o.burst == 0 {
        bail!("--batch and --burst must be at least 1");
    }
    let store = Store::connect(&o.database_url, &StoreOptions::default())
        .await
        .context("opening the server's database")?;
    // Node 1023 is left to tools, so these ids never meet the server's.
    let ids = SnowflakeGenerator::new(1023);
    let sampler = Sampler::new(o.server_pid);
    let run = format!("{:x}", rand::random::<u32>());
    let mut report = Report::default();

    // Burst: every job due at one instant after they are all written. The lead is longer
    // than the workers' idle look (5 s): on SQLite nothing tells a server that another
    // process wrote jobs, so it must have looked once since, and set its timer to their
    // due time, for the figures to measure the queue rather than that look.
    let tag = format!("{run}b");
    let lead_ms = LEAD_MS + (o.burst as i64 / 5);
    let due_at = ms_now() + lead_ms;
    let took = enqueue(&store, &ids, o.burst, o.batch, &tag, |_| due_at).await?;
    if ms_now() >= due_at {
        bail!("enqueueing took longer than the lead ({lead_ms} ms); use a smaller --burst");
    }
    tokio::time::sleep(Duration::from_millis((due_at - ms_now()).max(0) as u64)).await;
    let before = sampler.sample();
    wait_done(&store, &tag, o.phase_limit).await?;
    let after = sampler.sample();
    let t = timings(&store, &tag).await?;
    let last = t.iter().map(|(_, d)| *d).max().unwrap_or(due_at);
    let secs = ((last - due_at).max(1)) as f64 / 1000.0;
    let mut lat: Vec<i64> = t.iter().map(|(d, f)| (f - d).max(0)).collect();
    lat.sort_unstable();
    report.push(
        Row::new("jobs burst")
            .num("jobs", o.burst as f64)
            .num("enqueued_per_s", o.burst as f64 / took.as_secs_f64())
            .num("completed_per_s", t.len() as f64 / secs)
            .ms("due_to_done_p50_ms", percentile(&lat, 0.5))
            .ms("due_to_done_p99_ms", percentile(&lat, 0.99))
            .opt("server_cpu_pct", cpu_pct(before, after)),
    );

    // Paced: `rate` jobs/s, due evenly over `secs`, written ahead in one go.
    if o.rate > 0 && o.secs > 0 {
        let tag = format!("{run}p");
        let n = o.rate * o.secs as usize;
        let start = ms_now() + LEAD_MS + (n as i64 / 5);
        let step = 1000.0 / o.rate as f64;
        enqueue(&store, &ids, n, o.batch, &tag, |i| {
            start + (i as f64 * step) as i64
        })
        .await?;
        tokio::time::sleep(Duration::from_millis((start - ms_now()).max(0) as u64)).await;
        let before = sampler.sample();
        wait_done(&store, &tag, o.phase_limit + Duration::from_secs(o.secs)).await?;
        let after = sampler.sample();
        let mut lat: Vec<i64> = timings(&store, &tag)
            .await?
            .iter()
            .map(|(d, f)| (f - d).max(0))
            .collect();
        lat.sort_unstable();
        report.push(
            Row::new("jobs paced")
                .num("jobs", n as f64)
                .num("rate_per_s", o.rate as f64)
                .ms("due_to_done_p50_ms", percentile(&lat, 0.5))
                .ms("due_to_done_p99_ms", percentile(&lat, 0.99))
                .ms("due_to_done_max_ms", lat.last().map(|v| *v as f64))
                .opt("server_cpu_pct", cpu_pct(before, after)),
        );
    }
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM jobs WHERE job_key LIKE $1")
        .bind(format!("bench:{run}%"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    store.close().await;
    Ok(report)
}
