//! RabbitMQ as the transport of due jobs (`XCORD_AMQP_URL`, seed 003's queue).
//!
//! The database stays the record. Each `jobs` node claims due jobs under a short dispatch
//! lease (owner `broker`) and publishes `id:attempt` to the durable queue `xcord.jobs`
//! with publisher confirms. A worker that receives a message takes the dispatch lease over
//! (only while the job is still held by the broker for that attempt), runs the job like
//! the database transport does, and acks after its outcome is recorded. So:
//! - a lost message (a broker restart, a failed publish) leaves the job to its dispatch
//!   lease, after which it is claimed and published again;
//! - a duplicated or redelivered message finds the lease already taken or the job over,
//!   and is acked without effect;
//! - a worker that dies mid-job leaves its own lease to lapse, as without the broker.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xcord_core::Core;
use xcord_store::JobRecord;
use xcord_types::Snowflake;

use crate::JobsSettings;
use crate::runner::{Ran, Recorder, Sink, claim_loop, collect, drain, run_leased};

/// The lease owner of jobs on their way through the broker.
pub const BROKER_OWNER: &str = "broker";
/// How long a published job waits for a worker before it is published again.
pub const DISPATCH_LEASE_MS: i64 = 10_000;
/// Jobs claimed for publishing in one go.
pub const DISPATCH_BATCH: usize = 256;
/// The queue.
pub const QUEUE: &str = "xcord.jobs";

/// Publishes claimed jobs with confirms.
pub(crate) struct Publisher {
    channel: Channel,
    lost: CancellationToken,
}

impl Publisher {
    /// Publishes every job and waits for the broker's confirms; an error (a nack, a lost
    /// connection) marks the connection lost.
    pub(crate) async fn publish(&self, jobs: &[JobRecord]) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(jobs.len());
        for job in jobs {
            let body = format!("{}:{}", job.id, job.attempts);
            let sent = self
                .channel
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    // Persistent, so a broker restart keeps what it confirmed.
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match sent {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    self.lost.cancel();
                    return Err(e.into());
                }
            }
        }
        for confirm in confirms {
            match confirm.await {
                Ok(c) if c.is_ack() => {}
                Ok(_) => {
                    self.lost.cancel();
                    anyhow::bail!("the broker refused a job (nack)");
                }
                Err(e) => {
                    self.lost.cancel();
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

/// Resolves when the broker connection behind `sink` is lost (never for the database).
pub(crate) async fn closed(sink: &Sink) {
    match sink {
        Sink::Run => std::future::pending().await,
        Sink::Dispatch(p) => p.lost.cancelled().await,
    }
}

/// Keeps a session with the broker up until `stop`: connects, dispatches and consumes, and
/// after a failure connects again a second later.
pub async fn supervise(
    core: Arc<Core>,
    settings: Arc<JobsSettings>,
    url: String,
    remote: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut logged_down = false;
    while !stop.is_cancelled() {
        match session(&core, &settings, &url, &remote, &stop).await {
            Ok(()) => break,
            Err(e) => {
                if !logged_down {
                    tracing::warn!(error = %e, "the job broker is unreachable; retrying every second");
                    logged_down = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn session(
    core: &Arc<Core>,
    settings: &Arc<JobsSettings>,
    url: &str,
    remote: &Arc<Notify>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    publish
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    let consume = conn.create_channel().await?;
    consume
        .basic_qos(
            u16::try_from(settings.concurrency).unwrap_or(u16::MAX),
            BasicQosOptions::default(),
        )
        .await?;
    let consumer = consume
        .basic_consume(
            QUEUE.into(),
            settings.owner.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!("job broker connected");
    let lost = CancellationToken::new();
    let consuming = tokio::spawn(consume_loop(
        core.clone(),
        settings.clone(),
        consumer,
        lost.clone(),
        stop.clone(),
    ));
    let dispatched = claim_loop(
        core.clone(),
        settings.clone(),
        remote.clone(),
        stop.clone(),
        Sink::Dispatch(Publisher {
            channel: publish,
            lost: lost.clone(),
        }),
    )
    .await;
    lost.cancel();
    let _ = consuming.await;
    let _ = conn.close(200, "shutting down".into()).await;
    dispatched
}

/// Receives jobs from the broker and runs those whose dispatch lease it can take over.
async fn consume_loop(
    core: Arc<Core>,
    settings: Arc<JobsSettings>,
    mut consumer: lapin::Consumer,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    // Outcomes are written in batches, as the database workers' are; each task acks its
    // delivery once its outcome is written.
    let (recorder, writer) = Recorder::start(core.clone(), settings.clone(), None);
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        while let Some(done) = running.try_join_next() {
            collect(done, &());
        }
        let delivery = tokio::select! {
            _ = stop.cancelled() => break,
            _ = lost.cancelled() => break,
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the job broker's consumer failed");
                lost.cancel();
                break;
            }
            None => {
                lost.cancel();
                break;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (core, settings, recorder) = (core.clone(), settings.clone(), recorder.clone());
        running.spawn(async move {
            let _permit = permit;
            let ran = match parse(&delivery.data) {
                Some((id, attempt)) => take_over(&core, &settings, id, attempt).await,
                None => None,
            };
            let ran = match ran {
                Some(job) => {
                    metrics::counter!("jobs_attempts_total", "kind" => job.kind.clone())
                        .increment(1);
                    run_leased(core.clone(), settings.clone(), job).await
                }
                // Duplicated, redelivered or stale: the database says it is not ours.
                None => Ran {
                    kind: "broker".into(),
                    outcome: "skipped",
                    finish: None,
                },
            };
            recorder.record_and_wait(ran).await;
            // After the outcome is recorded; a lost ack only means a harmless redelivery.
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::debug!(error = %e, "a job delivery could not be acked");
            }
        });
    }
    // What does not end in time is left to its lease.
    drain(running, &()).await;
    drop(recorder);
    let _ = writer.await;
}

fn parse(body: &[u8]) -> Option<(Snowflake, i64)> {
    let text = std::str::from_utf8(body).ok()?;
    let (id, attempt) = text.split_once(':')?;
    Some((Snowflake::from_i64(id.parse().ok()?), attempt.parse().ok()?))
}

async fn take_over(
    core: &Core,
    settings: &JobsSettings,
    id: Snowflake,
    attempt: i64,
) -> Option<JobRecord> {
    match core
        .store
        .take_dispatched(
            id,
            attempt,
            BROKER_OWNER,
            &settings.owner,
            core.clock.now(),
            settings.lease_ms,
        )
        .await
    {
        Ok(job) => job,
        Err(e) => {
            // Left to the dispatch lease: it is published again once that lapses.
            tracing::warn!(job = %id, error = %e, "a delivered job could not be taken over");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bodies_name_a_job_and_its_attempt() {
        assert_eq!(parse(b"42:3"), Some((Snowflake::from_i64(42), 3)));
        assert_eq!(parse(b"42"), None);
        assert_eq!(parse(b"x:1"), None);
        assert_eq!(parse(&[0xff, 0xfe]), None);
    }
}
