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

use futures_util::FutureExt as _;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xcord_core::Core;
use xcord_core::scheduled::{JobResult, NOOP_JOB, SCHEDULED_JOB};
use xcord_store::{JobOutcome, JobRecord, JobState, MAX_ATTEMPTS};
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
    let label = match outcome.state_after(job.attempts) {
        JobState::Done => "done",
        JobState::Waiting => "retry",
        _ => "dead",
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

/// How long the recorder waits for more outcomes when only a few are queued.
const LINGER: Duration = Duration::from_millis(3);

/// A job that ended, on its way to the database; `recorded` is told once it is written.
struct Ended {
    ran: Ran,
    recorded: Option<oneshot::Sender<()>>,
}

/// Writes the outcomes of ended jobs from a task of its own, one transaction at a time, each
/// for everything that ended while the previous one was written: the workers claim and run
/// the next jobs meanwhile, and a busy queue records hundreds of outcomes per commit.
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: mpsc::UnboundedSender<Ended>,
}

impl Recorder {
    /// Starts the writer; it stops once every clone of the recorder is dropped and what
    /// they sent is written. `returned` gets one permit back per outcome written.
    pub(crate) fn start(
        core: Arc<Core>,
        settings: Arc<JobsSettings>,
        returned: Option<Arc<Semaphore>>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, mut pending) = mpsc::unbounded_channel::<Ended>();
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            while pending.recv_many(&mut batch, 4096).await > 0 {
                // A few more milliseconds gather the jobs ending one by one (a steady
                // trickle) into one commit instead of one each.
                if batch.len() < 64 {
                    tokio::time::sleep(LINGER).await;
                    while batch.len() < 4096 {
                        match pending.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                }
                let n = batch.len();
                let mut told = Vec::new();
                let ran = batch
                    .drain(..)
                    .map(|e| {
                        told.extend(e.recorded);
                        e.ran
                    })
                    .collect();
                settle(&core, &settings, ran).await;
                for t in told {
                    let _ = t.send(());
                }
                if let Some(permits) = &returned {
                    permits.add_permits(n);
                }
            }
        });
        (Self { queue }, writer)
    }

    /// Hands `ran` to the writer.
    pub(crate) fn record(&self, ran: Ran) {
        if self
            .queue
            .send(Ended {
                ran,
                recorded: None,
            })
            .is_err()
        {
            tracing::warn!("a job ended after its node's recorder stopped; its lease will lapse");
        }
    }

    /// Hands `ran` to the writer and waits until it is written (or given up on).
    pub(crate) async fn record_and_wait(&self, ran: Ran) {
        let (tx, rx) = oneshot::channel();
        if self
            .queue
            .send(Ended {
                ran,
                recorded: Some(tx),
            })
            .is_ok()
        {
            let _ = rx.await;
        }
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
            settings.concurrency.max(1),
        ),
        Sink::Dispatch(_) => (
            crate::amqp::BROKER_OWNER.to_owned(),
            crate::amqp::DISPATCH_LEASE_MS,
            crate::amqp::DISPATCH_BATCH,
        ),
    };
    // Jobs claimed and not yet recorded, at most four rounds' worth: while the recorder
    // writes one round's outcomes the loop claims and runs the next, but a database that
    // records slowly holds the claiming back.
    let unrecorded = Arc::new(Semaphore::new(batch * 4));
    let (recorder, writer) =
        Recorder::start(core.clone(), settings.clone(), Some(unrecorded.clone()));
    let mut running: JoinSet<Ran> = JoinSet::new();
    let jumps = core.clock.jumps();
    // Lapsed last attempts are made dead about once a second (a scan of the due jobs).
    let mut reaped_at: Option<tokio::time::Instant> = None;
    // Whether to claim on this round: not when a job ended while the last claim left free
    // slots (nothing more was due then, and the timer holds the next due time).
    let mut look = true;
    // The last claim filled every free slot, so more may be due.
    let mut more_due = false;
    let mut next_look = tokio::time::Instant::now();
    let result = loop {
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
        while let Some(done) = running.try_join_next() {
            collect(done, &recorder);
        }
        if look {
            next_look = tokio::time::Instant::now() + settings.idle_recheck;
            let free = batch
                .saturating_sub(running.len())
                .min(unrecorded.available_permits());
            // With no free slot, look again as soon as one frees.
            more_due = free == 0;
            if free > 0 {
                let now = core.clock.now();
                let reap = reaped_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                match core
                    .store
                    .claim_jobs(&owner, now, lease_ms, free as i64, reap)
                    .await
                {
                    Ok(jobs) => {
                        if reap {
                            reaped_at = Some(tokio::time::Instant::now());
                        }
                        more_due = jobs.len() == free;
                        match &sink {
                            Sink::Run => {
                                if let Ok(p) = unrecorded.try_acquire_many(jobs.len() as u32) {
                                    p.forget();
                                }
                                for job in jobs {
                                    metrics::counter!("jobs_attempts_total", "kind" => job.kind.clone())
                                        .increment(1);
                                    running.spawn(run_leased(core.clone(), settings.clone(), job));
                                }
                            }
                            // A failed publish leaves its jobs to their dispatch lease, after
                            // which they are claimed and published again.
                            Sink::Dispatch(publisher) => {
                                if let Err(e) = publisher.publish(&jobs).await {
                                    break Err(e);
                                }
                            }
                        }
                        if !more_due {
                            match core.store.next_job_at().await {
                                Ok(Some(at)) => {
                                    let ms = (at.as_millis() - core.clock.now().as_millis()).max(0);
                                    next_look = next_look.min(
                                        tokio::time::Instant::now()
                                            + Duration::from_millis(ms as u64),
                                    );
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot read the next job's time")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim jobs");
                        next_look = tokio::time::Instant::now() + Duration::from_secs(1);
                    }
                }
            }
        }
        let slots_free = running.len() < batch && unrecorded.available_permits() > 0;
        look = true;
        if more_due && slots_free {
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
            _ = stop.cancelled() => break Ok(()),
            _ = crate::amqp::closed(&sink) => {
                break Err(anyhow::anyhow!("the broker connection closed"));
            }
            _ = &mut enqueued => {}
            _ = &mut from_remote => {}
            _ = jumped_fut => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                collect(done, &recorder);
                // A wake-up that came together with the job's end must not be lost with
                // this round's waiters (a clock jump is told only to those waiting).
                let woken = enqueued.as_mut().now_or_never().is_some()
                    || from_remote.as_mut().now_or_never().is_some()
                    || jumped
                        .as_mut()
                        .is_some_and(|j| j.as_mut().now_or_never().is_some());
                look = more_due || woken;
            }
            // The recorder gave claims back (it had held the loop at its bound).
            _ = unrecorded.acquire(), if !slots_free && running.len() < batch => {}
            _ = tokio::time::sleep_until(next_look) => {}
        }
    };
    drain(running, &recorder).await;
    drop(recorder);
    let _ = writer.await;
    result
}

/// Waits for jobs in flight when the node stops; what does not end in time is left to its
/// lease (another node runs it again; effects are idempotent).
pub(crate) async fn drain<T: Send + 'static>(mut running: JoinSet<T>, recorder: &impl Collect<T>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, running.join_next()).await {
            Ok(Some(done)) => collect(done, recorder),
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
}

/// Where a finished task's result goes.
pub(crate) trait Collect<T> {
    fn put(&self, value: T);
}

impl Collect<Ran> for Recorder {
    fn put(&self, ran: Ran) {
        self.record(ran);
    }
}

impl Collect<()> for () {
    fn put(&self, _: ()) {}
}

/// Passes a job's task result on; a task that panicked is only counted (its lease lapses
/// and the job runs again).
pub(crate) fn collect<T>(done: Result<T, tokio::task::JoinError>, to: &impl Collect<T>) {
    match done {
        Ok(value) => to.put(value),
        Err(e) => {
            tracing::error!(error = %e, "a job's task ended abnormally; its lease will lapse");
            metrics::counter!("jobs_outcomes_total", "kind" => "unknown", "outcome" => "panicked")
                .increment(1);
        }
    }
}
