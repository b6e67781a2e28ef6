//! Automatic messages (SPEC §6, seed 003 §7): at each planning time the active users are
//! shuffled, paired, and each pair gets a message from the pool at a random time within the
//! window, delivered as a DM with `isAutomatic: true` by the job queue.

use serde::Serialize;
use xcord_store::{AutoMessageRecord, NewJob};
use xcord_types::rest::channels::CreateDmRequest;
use xcord_types::rest::messages::CreateMessageRequest;
use xcord_types::{Snowflake, Timestamp};

use crate::scheduled::{JobResult, JobTarget, failure_reason};
use crate::token::Caller;
use crate::{Core, Error, Result};

/// The job kind that delivers an automatic message.
pub const AUTO_JOB: &str = "auto_message";
/// The cron name under which planning ticks are claimed.
pub const CRON_NAME: &str = "auto_messages";

/// The pool used when `XCORD_AUTO_MESSAGES_POOL` names no file.
pub const BUILT_IN_POOL: [&str; 10] = [
    "Hey! How has your day been?",
    "What are you reading or watching at the moment?",
    "Hi there — any plans for the weekend?",
    "What's a small thing that made you smile recently?",
    "If you could learn one new skill this year, what would it be?",
    "Got a favourite song this week?",
    "Coffee or tea today?",
    "What's the best thing you've eaten lately?",
    "Hello! Just saying hi. How are things?",
    "What's something you're looking forward to?",
];

/// What one planning run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Users taking part.
    pub users: usize,
    /// Pairs made.
    pub pairs: usize,
    /// Pairs skipped (a block, or the receiver's `allowDMs`).
    pub skipped: usize,
    /// Messages planned.
    pub planned: usize,
}

/// Shuffles in place (Fisher–Yates: each position takes a uniformly chosen element of
/// those not yet placed).
pub fn fisher_yates<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rand::random_range(0..=i);
        items.swap(i, j);
    }
}

/// Pairs a shuffled list as (sender, receiver): first with second, third with fourth…;
/// an odd one out waits for the next run.
pub fn pairs<T: Copy>(shuffled: &[T]) -> Vec<(T, T)> {
    shuffled.chunks_exact(2).map(|p| (p[0], p[1])).collect()
}

fn job_key(id: Snowflake) -> String {
    format!("auto:{id}")
}

fn system_caller(user: Snowflake) -> Caller {
    Caller {
        user_id: user,
        session_id: Snowflake::from_i64(0),
        expires_at: Timestamp::from_millis(i64::MAX),
    }
}

impl Core {
    /// Plans the tick at `tick` (once across all nodes: the first to claim the tick plans
    /// it); `None` when another node already did.
    pub async fn plan_auto_messages(
        &self,
        tick: Timestamp,
        window_secs: u64,
        pool: &[String],
    ) -> Result<Option<PlanSummary>> {
        if pool.is_empty() {
            return Err(Error::invalid(
                "pool",
                "length",
                "the message pool is empty",
            ));
        }
        let mut users = self.store.auto_message_candidates().await?;
        fisher_yates(&mut users);
        let mut summary = PlanSummary {
            users: users.len(),
            ..PlanSummary::default()
        };
        let mut planned = Vec::new();
        for (sender, receiver) in pairs(&users) {
            summary.pairs += 1;
            if self.check_dm_allowed(sender, receiver).await.is_err() {
                summary.skipped += 1;
                continue;
            }
            let offset_ms = if window_secs == 0 {
                0
            } else {
                rand::random_range(0..window_secs.saturating_mul(1000)) as i64
            };
            let content = pool[rand::random_range(0..pool.len())].clone();
            planned.push(AutoMessageRecord {
                id: self.ids.next_id(),
                sender_id: sender,
                receiver_id: receiver,
                content,
                send_date: Timestamp::from_millis(tick.as_millis() + offset_ms),
                is_queued: false,
                is_sent: false,
                queued_at: None,
                sent_at: None,
                message_id: None,
                failure_reason: None,
                planned_at: tick,
            });
        }
        let now = self.clock.now();
        let mut uow = self.begin().await?;
        if !self
            .store
            .claim_cron_tick(uow.tx(), CRON_NAME, tick, self.settings.node_id)
            .await?
        {
            return Ok(None);
        }
        let mut jobs = Vec::with_capacity(planned.len());
        for a in &planned {
            self.store.insert_auto_message(uow.tx(), a).await?;
            jobs.push(NewJob {
                id: self.ids.next_id(),
                kind: AUTO_JOB.to_owned(),
                key: job_key(a.id),
                payload: serde_json::to_string(&JobTarget { id: a.id })
                    .map_err(|e| Error::Internal(e.into()))?,
                due_at: a.send_date,
            });
        }
        self.store.enqueue_jobs(uow.tx(), &jobs, now).await?;
        uow.commit().await?;
        summary.planned = planned.len();
        self.jobs_enqueued.notify_one();
        tracing::info!(
            users = summary.users,
            pairs = summary.pairs,
            skipped = summary.skipped,
            planned = summary.planned,
            "automatic messages planned"
        );
        Ok(Some(summary))
    }

    /// Delivers an automatic message (attempt `attempt` of at most `max_attempts`): opens
    /// (or finds) the DM and posts as the sender with `isAutomatic: true`, its id as nonce.
    pub async fn run_auto_message_job(
        &self,
        payload: &str,
        attempt: i64,
        max_attempts: i64,
    ) -> Result<JobResult> {
        let Ok(target) = serde_json::from_str::<JobTarget>(payload) else {
            tracing::warn!(
                payload,
                "an automatic-message job with an unreadable payload"
            );
            return Ok(JobResult::Done);
        };
        let Some(a) = self.store.auto_message(target.id).await? else {
            return Ok(JobResult::Done);
        };
        if a.is_sent || a.failure_reason.is_some() {
            return Ok(JobResult::Done);
        }
        if !a.is_queued {
            self.store.mark_auto_queued(a.id, self.clock.now()).await?;
        }
        let sender = system_caller(a.sender_id);
        let delivered = async {
            let (channel, _) = self
                .create_dm(
                    &sender,
                    a.sender_id,
                    CreateDmRequest {
                        recipient_id: Some(a.receiver_id),
                        recipients: None,
                        name: None,
                    },
                )
                .await?;
            let req = CreateMessageRequest {
                content: Some(a.content.clone()),
                nonce: Some(job_key(a.id)),
                ..CreateMessageRequest::default()
            };
            self.post_message_as(&sender, channel.id, req, true).await
        }
        .await;
        let (message_id, reason) = match delivered {
            Ok((m, _)) => (Some(m.id), None),
            Err(e) => match failure_reason(&e) {
                Some(reason) => (None, Some(reason)),
                None if attempt >= max_attempts => (
                    None,
                    Some(format!("could not be delivered after {attempt} attempts")),
                ),
                None => return Ok(JobResult::Retry(e.to_string())),
            },
        };
        let mut uow = self.begin().await?;
        self.store
            .finish_auto_message(
                uow.tx(),
                a.id,
                message_id,
                reason.as_deref(),
                self.clock.now(),
            )
            .await?;
        uow.commit().await?;
        Ok(JobResult::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_leave_the_odd_one_out() {
        assert_eq!(pairs(&[1, 2, 3, 4]), vec![(1, 2), (3, 4)]);
        assert_eq!(pairs(&[1, 2, 3, 4, 5]), vec![(1, 2), (3, 4)]);
        assert!(pairs::<u8>(&[7]).is_empty());
    }

    #[test]
    fn fisher_yates_keeps_every_element_and_reaches_every_position() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..2000 {
            let mut v: Vec<u32> = (0..5).collect();
            fisher_yates(&mut v);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
            seen_first.insert(v[0]);
        }
        assert_eq!(seen_first.len(), 5, "every element can come first");
    }
}
