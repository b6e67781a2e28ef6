//! The `jobs` role (SPEC §6, docs/jobs.md): workers of the durable job queue and the cron
//! planner of automatic messages.
//!
//! The queue is a table of the database (`xcord_store::repo::jobs`): jobs are enqueued in
//! the transaction of the change that causes them, claimed with a lease that the worker
//! renews, retried with exponential backoff and dead after ten attempts. Each job's effect
//! is idempotent (scheduled messages post with their id as nonce), so a worker that dies
//! after the effect and before recording it changes nothing when the job runs again.

pub mod amqp;
pub mod cron;
mod runner;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use xcord_core::{Core, NodeTask};
use xcord_store::{Backend, JobState};

pub use runner::backoff_ms;

/// How the workers of one node run.
#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// This worker's name in leases: the node id and a random suffix.
    pub owner: String,
    /// How long a claim holds before another node may take the job (renewed every third).
    pub lease_ms: i64,
    /// Jobs this node runs at once.
    pub concurrency: usize,
    /// Longest sleep without looking at the queue.
    pub idle_recheck: Duration,
    /// PostgreSQL's URL, for `LISTEN xcord_jobs` (wake-ups from other nodes).
    pub postgres_url: Option<String>,
    /// RabbitMQ's URL (`XCORD_AMQP_URL`): due jobs travel through the broker.
    pub amqp_url: Option<String>,
    /// The automatic messages' planner, when on.
    pub auto_messages: Option<cron::AutoMessages>,
    /// A crash to stage, for the crash tests (`XCORD_TEST_JOBS_FAULT`).
    pub fault: Option<Fault>,
}

/// A failure the crash tests stage at a chosen point of a job (docs/jobs.md, "Test hooks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Hold every claimed job before its effect, renewing its lease, until the process is
    /// killed: a node that dies mid-job.
    StallBeforeEffect,
    /// Abort the process right after a job's effect, before its outcome is recorded.
    CrashAfterEffect,
}

impl Fault {
    /// `stall-before-effect` or `crash-after-effect`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stall-before-effect" => Some(Fault::StallBeforeEffect),
            "crash-after-effect" => Some(Fault::CrashAfterEffect),
            _ => None,
        }
    }
}

impl JobsSettings {
    /// Defaults for node `node_id`: 15 s leases (taken over ≤ 30 s after a node dies), 128
    /// jobs at once, a look at least every 5 s.
    pub fn new(node_id: u16) -> Self {
        Self {
            owner: format!("node{node_id}-{:08x}", rand::random::<u32>()),
            lease_ms: 15_000,
            concurrency: 128,
            idle_recheck: Duration::from_secs(5),
            postgres_url: None,
            amqp_url: None,
            auto_messages: None,
            fault: None,
        }
    }
}

/// Names and describes the queue's metrics.
pub fn describe_metrics() {
    metrics::describe_gauge!("jobs_queue_depth", "Jobs by state (and kind)");
    metrics::describe_gauge!(
        "jobs_lag_seconds",
        "Now minus the due time of the oldest due job not yet claimed (0 when none)"
    );
    metrics::describe_counter!("jobs_attempts_total", "Job attempts started (claims)");
    metrics::describe_counter!(
        "jobs_outcomes_total",
        "Job attempts by outcome: done, retry, dead, panicked"
    );
    metrics::describe_histogram!(
        "jobs_due_to_done_seconds",
        "From a job's due time to its successful end"
    );
}

/// Starts the workers (and the planner) of a `jobs` node.
pub async fn start(
    core: Arc<Core>,
    settings: JobsSettings,
    stop: CancellationToken,
) -> anyhow::Result<Vec<NodeTask>> {
    describe_metrics();
    let settings = Arc::new(settings);
    let remote = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    if core.store.backend() == Backend::Postgres
        && let Some(url) = settings.postgres_url.clone()
    {
        tasks.push(NodeTask::spawn(
            "jobs listener",
            listen_postgres(url, remote.clone(), stop.clone()),
        ));
    }
    match settings.amqp_url.clone() {
        Some(url) => tasks.push(NodeTask::spawn(
            "jobs broker",
            amqp::supervise(core.clone(), settings.clone(), url, remote, stop.clone()),
        )),
        None => {
            let (core, settings, stop) = (core.clone(), settings.clone(), stop.clone());
            tasks.push(NodeTask::spawn("jobs workers", async move {
                if let Err(e) =
                    runner::claim_loop(core, settings, remote, stop, runner::Sink::Run).await
                {
                    tracing::error!(error = %e, "the job workers stopped");
                }
            }));
        }
    }
    tasks.push(NodeTask::spawn(
        "jobs gauges",
        sample_gauges(core.clone(), stop.clone()),
    ));
    if let Some(auto) = settings.auto_messages.clone() {
        tasks.push(NodeTask::spawn(
            "automatic messages planner",
            cron::plan_loop(core, auto, stop),
        ));
    }
    Ok(tasks)
}

/// Wakes the workers when any node enqueues (the `pg_notify` in the enqueuing transaction
/// is delivered at its commit). A lost connection is opened again; until then the workers'
/// own timers cover.
async fn listen_postgres(url: String, remote: Arc<Notify>, stop: CancellationToken) {
    loop {
        let listened = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen("xcord_jobs").await?;
            loop {
                listener.recv().await?;
                remote.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = listened => if let Err(e) = r {
                tracing::warn!(error = %e, "the jobs listener lost PostgreSQL; reconnecting");
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Queue depth by state and the lag of the oldest due job, every 5 s.
async fn sample_gauges(core: Arc<Core>, stop: CancellationToken) {
    loop {
        if let Ok(counts) = core.store.job_counts().await {
            for state in JobState::ALL {
                let n: i64 = counts
                    .iter()
                    .filter(|c| c.state == state)
                    .map(|c| c.count)
                    .sum();
                metrics::gauge!("jobs_queue_depth", "state" => state.as_str()).set(n as f64);
            }
        }
        let now = core.clock.now();
        if let Ok(oldest) = core.store.oldest_due_job(now).await {
            let lag = oldest
                .map(|t| (now.as_millis() - t.as_millis()).max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("jobs_lag_seconds").set(lag);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
