//! Scheduled messages (SPEC §6): stored with their job in one unit of work, posted by the
//! job at `sendAt` as an ordinary message by their author, exactly once.
//!
//! Exactly once: the job first moves the message from `scheduled` to `sending` (after which
//! its author can no longer edit or cancel it), then posts it with the nonce
//! `scheduled:{id}`. The messages table holds a unique (channel, author, nonce) index, so a
//! second attempt — a worker that died after posting, a lease taken over — finds the first
//! post instead of making another, and goes on to record it.

use serde::{Deserialize, Serialize};
use xcord_bus::Topic;
use xcord_permissions::bits;
use xcord_store::{NewJob, ScheduledRecord, ScheduledStatus};
use xcord_types::events::Event;
use xcord_types::rest::messages::CreateMessageRequest;
use xcord_types::rest::scheduled::{
    CreateScheduledRequest, EditScheduledRequest, ScheduledMessage, ScheduledMessageList,
};
use xcord_types::{Snowflake, Timestamp};

use crate::error::{Clash, Entity, Scope};
use crate::messages::require_message_channel;
use crate::servers::require_bits;
use crate::token::Caller;
use crate::validate::Violations;
use crate::{Core, Error, Result};

/// A job that does nothing: for measuring the queue itself (`xcord-bench jobs`).
pub const NOOP_JOB: &str = "noop";
/// The job kind that posts a scheduled message.
pub const SCHEDULED_JOB: &str = "scheduled_message";
/// How far ahead a message may be scheduled.
pub const MAX_AHEAD_MS: i64 = 120 * 24 * 3600 * 1000;
/// Scheduled messages one user may have waiting.
pub const MAX_WAITING: i64 = 100;

/// A job's payload: what it is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct JobTarget {
    /// The scheduled (or automatic) message.
    pub id: Snowflake,
}

/// What running a job came to, for the queue.
#[derive(Debug)]
pub enum JobResult {
    /// The effect happened, was already there, or will never happen (recorded as such).
    Done,
    /// A passing failure: try again (with backoff; after the last attempt the job is dead).
    Retry(String),
    /// Try again no earlier than this (e.g. a slowmode that has not passed).
    RetryAt(Timestamp, String),
}

/// The key of a scheduled message's job, and the nonce it is posted with (its
/// idempotency key in the messages table).
pub fn scheduled_nonce(id: Snowflake) -> String {
    format!("scheduled:{id}")
}

/// The wire form of a scheduled message (`sending` shows as `scheduled`).
pub fn scheduled_wire(s: &ScheduledRecord) -> ScheduledMessage {
    let status = match s.status {
        ScheduledStatus::Sending => ScheduledStatus::Scheduled,
        other => other,
    };
    ScheduledMessage {
        id: s.id,
        channel_id: s.channel_id,
        author_id: s.author_id,
        content: s.content.clone(),
        send_at: s.send_at,
        status: status.as_str().to_owned(),
        message_id: s.message_id,
        failure_reason: s.failure_reason.clone(),
        reply_to: s.reply_to,
        attachment_ids: s.attachment_ids.clone(),
        created_at: s.created_at,
    }
}

/// Checks `sendAt`: RFC 3339, after `now`, at most 120 days ahead.
fn check_send_at(v: &mut Violations, raw: Option<&str>, now: Timestamp) -> Option<Timestamp> {
    let Some(raw) = raw else {
        v.push("sendAt", "required", "an RFC 3339 time is required");
        return None;
    };
    let Some(at) = Timestamp::parse_rfc3339(raw) else {
        v.push(
            "sendAt",
            "format",
            "must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z",
        );
        return None;
    };
    if at.as_millis() <= now.as_millis() {
        v.push("sendAt", "future", "must be in the future");
        return None;
    }
    if at.as_millis() > now.as_millis() + MAX_AHEAD_MS {
        v.push("sendAt", "horizon", "must be at most 120 days ahead");
        return None;
    }
    Some(at)
}

fn check_content(v: &mut Violations, content: &str, attachments: usize) {
    let n = content.chars().count();
    if n > 2000 || (content.trim().is_empty() && attachments == 0) {
        v.push(
            "content",
            "length",
            "must be 1–2000 characters (or attach a file)",
        );
    }
}

impl Core {
    /// `POST /channels/{id}/scheduled-messages`.
    pub async fn schedule_message(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        req: CreateScheduledRequest,
    ) -> Result<ScheduledMessage> {
        let ctx = self.channel_context(caller, channel_id).await?;
        require_message_channel(&ctx)?;
        let now = self.clock.now();
        let content = req.content.unwrap_or_default();
        let attachment_ids = req.attachment_ids.unwrap_or_default();
        let mut v = Violations::default();
        check_content(&mut v, &content, attachment_ids.len());
        if attachment_ids.len() > 10 {
            v.push("attachmentIds", "length", "at most 10 attachments");
        }
        let send_at = check_send_at(&mut v, req.send_at.as_deref(), now);
        v.finish()?;
        let send_at = send_at.ok_or_else(|| Error::invalid("sendAt", "required", "required"))?;
        require_bits(
            ctx.perms,
            bits::SEND_MESSAGES,
            Scope::Channel(ctx.channel.id),
        )?;
        if !attachment_ids.is_empty() {
            require_bits(
                ctx.perms,
                bits::ATTACH_FILES,
                Scope::Channel(ctx.channel.id),
            )?;
            for id in &attachment_ids {
                self.unused_upload(caller.user_id, channel_id, *id).await?;
            }
        }
        self.check_dm_block(&ctx, caller.user_id).await?;
        if let Some(parent) = req.reply_to
            && self.store.message(channel_id, parent).await?.is_none()
        {
            return Err(Error::invalid(
                "replyTo",
                "sameChannel",
                "must be a live message of this channel",
            ));
        }
        let record = ScheduledRecord {
            id: self.ids.next_id(),
            channel_id,
            author_id: caller.user_id,
            content,
            reply_to: req.reply_to,
            attachment_ids,
            send_at,
            status: ScheduledStatus::Scheduled,
            message_id: None,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        };
        let mut uow = self.begin().await?;
        let waiting = self
            .store
            .scheduled_waiting_count(uow.tx(), caller.user_id)
            .await?;
        if waiting >= MAX_WAITING {
            return Err(Error::invalid(
                "sendAt",
                "limit",
                format!("at most {MAX_WAITING} scheduled messages may wait at once"),
            ));
        }
        self.store.insert_scheduled(uow.tx(), &record).await?;
        let job = NewJob {
            id: self.ids.next_id(),
            kind: SCHEDULED_JOB.to_owned(),
            key: scheduled_nonce(record.id),
            payload: job_payload(record.id)?,
            due_at: send_at,
        };
        self.store.enqueue_job(uow.tx(), &job, now).await?;
        let wire = scheduled_wire(&record);
        uow.emit(
            Topic::User(caller.user_id),
            Event::ScheduledMessageUpdate(wire.clone()),
        )?;
        uow.commit().await?;
        self.jobs_enqueued.notify_one();
        Ok(wire)
    }

    /// `GET /channels/{id}/scheduled-messages`: the caller's waiting ones there.
    pub async fn channel_scheduled(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
    ) -> Result<ScheduledMessageList> {
        self.channel_context(caller, channel_id).await?;
        let list = self
            .store
            .scheduled_waiting_in(caller.user_id, channel_id)
            .await?;
        Ok(ScheduledMessageList {
            scheduled_messages: list.iter().map(scheduled_wire).collect(),
        })
    }

    /// `GET /users/@me/scheduled-messages?status=`: the caller's, newest first.
    pub async fn my_scheduled(
        &self,
        caller: &Caller,
        status: Option<&str>,
    ) -> Result<ScheduledMessageList> {
        let statuses: Option<Vec<ScheduledStatus>> = match status {
            None | Some("") => None,
            Some("scheduled") => Some(vec![ScheduledStatus::Scheduled, ScheduledStatus::Sending]),
            Some(s) => match ScheduledStatus::parse(s) {
                Some(st) if st != ScheduledStatus::Sending => Some(vec![st]),
                _ => {
                    return Err(Error::invalid(
                        "status",
                        "oneOf",
                        "must be scheduled, sent, failed or cancelled",
                    ));
                }
            },
        };
        let list = self
            .store
            .scheduled_of(caller.user_id, statuses.as_deref())
            .await?;
        Ok(ScheduledMessageList {
            scheduled_messages: list.iter().map(scheduled_wire).collect(),
        })
    }

    /// The caller's scheduled message `id` in `channel_id`; 404 for anyone else's.
    async fn own_scheduled(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
    ) -> Result<ScheduledRecord> {
        match self.store.scheduled(id).await? {
            Some(s) if s.author_id == caller.user_id && s.channel_id == channel_id => Ok(s),
            _ => Err(Error::NotFound(Entity::ScheduledMessage)),
        }
    }

    /// `GET /channels/{id}/scheduled-messages/{scheduledId}`.
    pub async fn get_scheduled(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
    ) -> Result<ScheduledMessage> {
        Ok(scheduled_wire(
            &self.own_scheduled(caller, channel_id, id).await?,
        ))
    }

    /// `PATCH /channels/{id}/scheduled-messages/{scheduledId}`: while it waits.
    pub async fn edit_scheduled(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
        req: EditScheduledRequest,
    ) -> Result<ScheduledMessage> {
        let current = self.own_scheduled(caller, channel_id, id).await?;
        let now = self.clock.now();
        let mut v = Violations::default();
        if let Some(c) = &req.content {
            check_content(&mut v, c, current.attachment_ids.len());
        }
        let send_at = match req.send_at.as_deref() {
            Some(raw) => check_send_at(&mut v, Some(raw), now),
            None => Some(current.send_at),
        };
        v.finish()?;
        let send_at = send_at.unwrap_or(current.send_at);
        let content = req.content.unwrap_or_else(|| current.content.clone());
        let mut uow = self.begin().await?;
        if !self
            .store
            .update_scheduled(uow.tx(), id, &content, send_at, now)
            .await?
        {
            return Err(Error::Conflict(Clash::ScheduledNotWaiting));
        }
        self.store
            .reschedule_job(uow.tx(), &scheduled_nonce(id), send_at)
            .await?;
        let updated = ScheduledRecord {
            content,
            send_at,
            updated_at: now,
            ..current
        };
        let wire = scheduled_wire(&updated);
        uow.emit(
            Topic::User(caller.user_id),
            Event::ScheduledMessageUpdate(wire.clone()),
        )?;
        uow.commit().await?;
        self.jobs_enqueued.notify_one();
        Ok(wire)
    }

    /// `DELETE /channels/{id}/scheduled-messages/{scheduledId}`: cancels it while it waits.
    pub async fn cancel_scheduled(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        id: Snowflake,
    ) -> Result<()> {
        let current = self.own_scheduled(caller, channel_id, id).await?;
        let now = self.clock.now();
        let mut uow = self.begin().await?;
        if !self
            .store
            .set_scheduled_status(
                uow.tx(),
                id,
                &[ScheduledStatus::Scheduled],
                ScheduledStatus::Cancelled,
                None,
                None,
                now,
            )
            .await?
        {
            return Err(Error::Conflict(Clash::ScheduledNotWaiting));
        }
        self.store
            .cancel_job(uow.tx(), &scheduled_nonce(id), now)
            .await?;
        let cancelled = ScheduledRecord {
            status: ScheduledStatus::Cancelled,
            updated_at: now,
            ..current
        };
        uow.emit(
            Topic::User(caller.user_id),
            Event::ScheduledMessageUpdate(scheduled_wire(&cancelled)),
        )?;
        uow.commit().await?;
        Ok(())
    }

    /// Runs a scheduled message's job (attempt `attempt` of at most `max_attempts`).
    pub async fn run_scheduled_job(
        &self,
        payload: &str,
        attempt: i64,
        max_attempts: i64,
    ) -> Result<JobResult> {
        let Ok(target) = serde_json::from_str::<JobTarget>(payload) else {
            // Nothing can ever come of it; kept as done with the log line.
            tracing::warn!(
                payload,
                "a scheduled-message job with an unreadable payload"
            );
            return Ok(JobResult::Done);
        };
        let id = target.id;
        let Some(s) = self.store.scheduled(id).await? else {
            return Ok(JobResult::Done);
        };
        let now = self.clock.now();
        match s.status {
            ScheduledStatus::Sent | ScheduledStatus::Failed | ScheduledStatus::Cancelled => {
                return Ok(JobResult::Done);
            }
            ScheduledStatus::Scheduled => {
                if s.send_at.as_millis() > now.as_millis() {
                    // Claimed early (a moved time raced the claim): wait for the time.
                    return Ok(JobResult::RetryAt(s.send_at, "not yet due".into()));
                }
                let mut uow = self.begin().await?;
                let took = self
                    .store
                    .set_scheduled_status(
                        uow.tx(),
                        id,
                        &[ScheduledStatus::Scheduled],
                        ScheduledStatus::Sending,
                        None,
                        None,
                        now,
                    )
                    .await?;
                uow.commit().await?;
                if !took {
                    // Cancelled or moved in between: it is no longer this attempt's to post.
                    return Ok(match self.store.scheduled(id).await? {
                        Some(again) if again.status == ScheduledStatus::Scheduled => {
                            JobResult::RetryAt(again.send_at, "moved to a later time".into())
                        }
                        _ => JobResult::Done,
                    });
                }
            }
            // An earlier attempt began posting it: finish (the nonce keeps it to one post).
            ScheduledStatus::Sending => {}
        }
        let author = Caller {
            user_id: s.author_id,
            session_id: Snowflake::from_i64(0),
            expires_at: Timestamp::from_millis(i64::MAX),
        };
        let req = CreateMessageRequest {
            content: Some(s.content.clone()),
            nonce: Some(scheduled_nonce(id)),
            reply_to: s.reply_to,
            attachment_ids: (!s.attachment_ids.is_empty()).then(|| s.attachment_ids.clone()),
            encrypted: None,
            encrypted_keys: None,
        };
        match self.post_message(&author, s.channel_id, req).await {
            Ok((message, _)) => {
                self.finish_scheduled(&s, ScheduledStatus::Sent, Some(message.id), None)
                    .await?;
                Ok(JobResult::Done)
            }
            Err(e) => match failure_reason(&e) {
                Some(reason) => {
                    self.finish_scheduled(&s, ScheduledStatus::Failed, None, Some(&reason))
                        .await?;
                    Ok(JobResult::Done)
                }
                None if attempt >= max_attempts => {
                    let reason = format!("could not be posted after {attempt} attempts");
                    self.finish_scheduled(&s, ScheduledStatus::Failed, None, Some(&reason))
                        .await?;
                    Ok(JobResult::Done)
                }
                None => match e {
                    Error::RateLimited {
                        retry_after_secs, ..
                    } => Ok(JobResult::RetryAt(
                        Timestamp::from_millis(
                            now.as_millis() + (retry_after_secs.max(1) as i64) * 1000,
                        ),
                        "slowmode".into(),
                    )),
                    other => Ok(JobResult::Retry(other.to_string())),
                },
            },
        }
    }

    async fn finish_scheduled(
        &self,
        s: &ScheduledRecord,
        to: ScheduledStatus,
        message_id: Option<Snowflake>,
        reason: Option<&str>,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut uow = self.begin().await?;
        let changed = self
            .store
            .set_scheduled_status(
                uow.tx(),
                s.id,
                &[ScheduledStatus::Sending],
                to,
                message_id,
                reason,
                now,
            )
            .await?;
        if changed {
            let done = ScheduledRecord {
                status: to,
                message_id,
                failure_reason: reason.map(str::to_owned),
                updated_at: now,
                ..s.clone()
            };
            uow.emit(
                Topic::User(s.author_id),
                Event::ScheduledMessageUpdate(scheduled_wire(&done)),
            )?;
        }
        uow.commit().await?;
        Ok(())
    }
}

/// The job's payload for the scheduled message `id`.
pub(crate) fn job_payload(id: Snowflake) -> Result<String> {
    serde_json::to_string(&JobTarget { id }).map_err(|e| Error::Internal(e.into()))
}

/// Why the author can no longer post, when that is what `e` says; `None` for a passing
/// failure (database down, rate limits).
pub(crate) fn failure_reason(e: &Error) -> Option<String> {
    match e {
        Error::NotFound(Entity::Channel) => {
            Some("the channel no longer exists or the author can no longer see it".into())
        }
        Error::NotFound(entity) => Some(format!("the {} no longer exists", entity.noun())),
        Error::MissingPermission { .. } => {
            Some("the author may no longer send messages in this channel".into())
        }
        Error::Denied(_) | Error::Refused(_) => {
            Some("the author can no longer post in this channel".into())
        }
        Error::Validation(errors) => Some(
            errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    }
}
