//! The worker loop of a `jobs` node: claims due jobs from the database with a lease, runs
//! each on its own task while renewing the lease, and records the outcome.
//!
//! It wakes when this node enqueues a job (the core's notifier), when another node does
//! (PostgreSQL `LISTEN xcord_jobs`), when one of its own jobs ends (a slot is free), when a
//! test's clock jumps, and at the next due time it read from the database — never more
//! often than that, and at least every `idle_recheck` (for leases that lapse on other
//! nodes and for clocks that move).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xcord_core::Core;
use xcord_core::scheduled::{JobResult, NOOP_JOB, SCHEDULED_JOB};
use xcord_store::{JobOutcome, JobRecord, MAX_ATTEMPTS};
use xcord_types::Timestamp;

use crate::JobsSettings;

/// A job that ran: its outcome for the metrics and, until recorded, for the database.
pub(crate) struct Ran {
    pub kind: String,
    pub outcome: &'static str,
    /// The attempt and its outcome, still to be written ([`settle`]).
    pub finish: Option<(JobRecord, JobOutcome)>,
}

/// How long the attempt after `attempt` failures waits: 2 s, 4 s, 8 s… up to an hour,
/// with a fifth of jitter so that a burst of failures does not come back as one.
pub fn backoff_ms(attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 20) as u32;
    let base = 1000i64.saturating_mul(1 << exp).min(3_600_000);
    let jitter = rand::random_range(0..=base / 5);
    base - base / 10 + jitter
}

/// Runs one claimed job to its outcome.
pub(crate) async fn run_job(core: &Core, job: &JobRecord) -> JobOutcome {
    let now = core.clock.now();
    let result = match job.kind.as_str() {
        SCHEDULED_JOB => {
            core.run_scheduled_job(&job.payload, job.attempts, MAX_ATTEMPTS)
                .await
        }
        xcord_core::auto_messages::AUTO_JOB => {
            core.run_auto_message_job(&job.payload, job.attempts, MAX_ATTEMPTS)
                .await
        }
        NOOP_JOB => Ok(JobResult::Done),
        // A kind a newer node enqueued: left for a node that knows it.
        other => Ok(JobResult::Retry(format!(
            "no handler for jobs of kind {other}"
        ))),
    };
    match result {
        Ok(JobResult::Done) => JobOutcome::Done,
        Ok(JobResult::Retry(error)) => JobOutcome::Retry {
            at: Timestamp::from_millis(now.as_millis() + backoff_ms(job.attempts)),
            error,
        },
        Ok(JobResult::RetryAt(at, error)) => JobOutcome::Retry { at, error },
        Err(e) => JobOutcome::Retry {
            at: Timestamp::from_millis(now.as_millis() + backoff_ms(job.attempts)),
            error: e.to_string(),
        },
    }
}

/// Runs `job` while renewing its lease, then records the outcome. Returns what happened
/// for the metrics.
pub(crate) async fn run_leased(
    core: Arc<Core>,
    settings: Arc<JobsSettings>,
    job: JobRecord,
) -> Ran {
    let renew_every = Duration::from_millis((settings.lease_ms / 3).max(100) as u64);
    let fault = settings.fault;
    let outcome = {
        let work = async {
            if fault == Some(crate::Fault::StallBeforeEffect) {
                tracing::warn!(job = %job.id, "test hook: holding the job until the process is killed");
                std::future::pending::<()>().await;
            }
            let outcome = run_job(&core, &job).await;
            if fault == Some(crate::Fault::CrashAfterEffect) && outcome == JobOutcome::Done {
                tracing::error!(job = %job.id, "test hook: aborting after the effect, before recording it");
                std::process::abort();
            }
            outcome
        };
        tokio::pin!(work);
        // The lease is renewed by a task of its own: renewing inline would stop polling the
        // job while the renewal waits for a connection, and a job holding a connection (in
        // a transaction) would then hold it until the renewal gives up.
        let renewer = {
            let (core, settings) = (core.clone(), settings.clone());
            let (id, attempt) = (job.id, job.attempts);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(renew_every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    let until =
                        Timestamp::from_millis(core.clock.now().as_millis() + settings.lease_ms);
                    match core
                        .store
                        .renew_jobs(&settings.owner, &[(id, attempt)], until)
                        .await
                    {
                        Ok(0) => {
                            tracing::warn!(job = %id, "a job's lease was taken over while it ran");
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(job = %id, error = %e, "a job's lease could not be renewed");
                        }
                    }
                }
            })
        };
        let outcome = work.await;
        renewer.abort();
        outcome
    };
    let label = match &outcome {
        JobOutcome::Done => "done",
        JobOutcome::Retry { .. } if job.attempts >= MAX_ATTEMPTS => "dead",
        JobOutcome::Retry { .. } => "retry",
        JobOutcome::Dead { .. } => "dead",
    };
    if let JobOutcome::Retry { error, .. } | JobOutcome::Dead { error } = &outcome {
        tracing::warn!(job = %job.id, kind = job.kind, attempt = job.attempts, error, "a job attempt failed");
    }
    Ran {
        kind: job.kind.clone(),
        outcome: label,
        finish: Some((job, outcome)),
    }
}

/// Writes the outcomes of jobs that ran in one transaction and counts them. Bounded
/// retries: a database that stays down leaves the leases to lapse and the jobs to run again
/// (their effects are idempotent).
pub(crate) async fn settle(core: &Core, settings: &JobsSettings, ran: Vec<Ran>) {
    let now = core.clock.now();
    let mut batch = Vec::with_capacity(ran.len());
    for r in &ran {
        if let Some((job, outcome)) = &r.finish {
            batch.push((job.id, job.attempts, outcome.clone()));
        }
    }
    let mut recorded = batch.is_empty();
    for wait_ms in [0u64, 200, 1000, 3000] {
        if recorded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        match core.store.finish_jobs(&settings.owner, &batch, now).await {
            Ok(held) => {
                if held < batch.len() {
                    tracing::warn!(
                        lost = batch.len() - held,
                        "jobs ended after their leases were taken over"
                    );
                }
                recorded = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "job outcomes could not be recorded")
            }
        }
    }
    for r in ran {
        if recorded
            && r.outcome == "done"
            && let Some((job, _)) = &r.finish
        {
            let late = (now.as_millis() - job.due_at.as_millis()).max(0) as f64 / 1000.0;
            metrics::histogram!("jobs_due_to_done_seconds", "kind" => r.kind.clone()).record(late);
        }
        metrics::counter!("jobs_outcomes_total", "kind" => r.kind, "outcome" => r.outcome)
            .increment(1);
    }
}

/// What the claiming loop does with the jobs it claims.
pub(crate) enum Sink {
    /// Runs them on this node (the database transport).
    Run,
    /// Hands them to the broker under a short dispatch lease; a worker that receives one
    /// takes the lease over (`XCORD_AMQP_URL`).
    Dispatch(crate::amqp::Publisher),
}

/// The claiming loop. With [`Sink::Dispatch`] it returns when the broker fails (the
/// supervisor reconnects); otherwise when `stop` is cancelled.
pub(crate) async fn claim_loop(
    core: Arc<Core>,
    settings: Arc<JobsSettings>,
    remote: Arc<Notify>,
    stop: CancellationToken,
    sink: Sink,
) -> anyhow::Result<()> {
    let (owner, lease_ms, batch) = match &sink {
        Sink::Run => (
            settings.owner.clone(),
            settings.lease_ms,
            settings.concurrency,
        ),
        Sink::Dispatch(_) => (
            crate::amqp::BROKER_OWNER.to_owned(),
            crate::amqp::DISPATCH_LEASE_MS,
            crate::amqp::DISPATCH_BATCH,
        ),
    };
    let mut running: JoinSet<Ran> = JoinSet::new();
    let jumps = core.clock.jumps();
    loop {
        // Registered before looking, so a wake-up during the look is not lost.
        let enqueued = core.jobs_enqueued.notified();
        let from_remote = remote.notified();
        let jumped = jumps.as_ref().map(|n| n.notified());
        tokio::pin!(enqueued, from_remote);
        enqueued.as_mut().enable();
        from_remote.as_mut().enable();
        let mut jumped = jumped.map(Box::pin);
        if let Some(j) = jumped.as_mut() {
            j.as_mut().enable();
        }
        let mut ended = Vec::new();
        while let Some(done) = running.try_join_next() {
            collect(done, &mut ended);
        }
        settle(&core, &settings, ended).await;
        let mut wait = settings.idle_recheck;
        let free = batch.saturating_sub(running.len());
        if free > 0 {
            let now = core.clock.now();
            match core
                .store
                .claim_jobs(&owner, now, lease_ms, free as i64)
                .await
            {
                Ok(jobs) => {
                    let full = jobs.len() == free;
                    match &sink {
                        Sink::Run => {
                            for job in jobs {
                                metrics::counter!("jobs_attempts_total", "kind" => job.kind.clone())
                                    .increment(1);
                                running.spawn(run_leased(core.clone(), settings.clone(), job));
                            }
                        }
                        // A failed publish leaves its jobs to their dispatch lease, after
                        // which they are claimed and published again.
                        Sink::Dispatch(publisher) => publisher.publish(&jobs).await?,
                    }
                    if full {
                        // There may be more: look again as soon as a slot frees.
                        wait = Duration::ZERO;
                    } else {
                        match core.store.next_job_at().await {
                            Ok(Some(at)) => {
                                let ms = (at.as_millis() - core.clock.now().as_millis()).max(0);
                                wait = wait.min(Duration::from_millis(ms as u64));
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot read the next job's time"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim jobs");
                    wait = Duration::from_secs(1);
                }
            }
        }
        if wait.is_zero() && running.len() < batch {
            tokio::task::yield_now().await;
            continue;
        }
        let jumped_fut = async {
            match jumped.as_mut() {
                Some(j) => j.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = crate::amqp::closed(&sink) => {
                anyhow::bail!("the broker connection closed");
            }
            _ = &mut enqueued => {}
            _ = &mut from_remote => {}
            _ = jumped_fut => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                let mut ended = Vec::new();
                collect(done, &mut ended);
                while let Some(more) = running.try_join_next() {
                    collect(more, &mut ended);
                }
                settle(&core, &settings, ended).await;
            }
            _ = tokio::time::sleep(wait), if !wait.is_zero() => {}
        }
    }
    drain(&core, &settings, running).await;
    Ok(())
}

/// Waits for jobs in flight when the node stops; what does not end in time is left to its
/// lease (another node runs it again; effects are idempotent).
pub(crate) async fn drain(core: &Core, settings: &JobsSettings, mut running: JoinSet<Ran>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut ended = Vec::new();
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, running.join_next()).await {
            Ok(Some(done)) => collect(done, &mut ended),
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    jobs = running.len(),
                    "jobs still running at shutdown are left to their leases"
                );
                running.abort_all();
                break;
            }
        }
    }
    settle(core, settings, ended).await;
}

/// Adds a job's task result to `ended`; a task that panicked is only counted (its lease
/// lapses and the job runs again).
pub(crate) fn collect<T>(done: Result<T, tokio::task::JoinError>, ended: &mut Vec<T>) {
    match done {
        Ok(ran) => ended.push(ran),
        Err(e) => {
            tracing::error!(error = %e, "a job's task ended abnormally; its lease will lapse");
            metrics::counter!("jobs_outcomes_total", "kind" => "unknown", "outcome" => "panicked")
                .increment(1);
        }
    }
}
