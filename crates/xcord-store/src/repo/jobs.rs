//! The durable job queue's table (docs/jobs.md): enqueue in a use-case's transaction, claim
//! with a lease, renew, finish, and the operator's list, retry and purge.
//!
//! A job is claimable while `state` is `waiting` or `running` and `available_at` has passed:
//! for a waiting job that is its due (or retry) time, for a running one the end of its
//! lease, so a job whose worker died is claimed again once the lease runs out. Every claim
//! adds one to `attempts`, and a worker's later writes name the attempt they belong to: a
//! worker whose lease was taken over cannot finish or renew the job it lost.

use sqlx::Row as _;
use sqlx::any::AnyRow;
use xcord_types::{Snowflake, Timestamp};

use super::sf;
use crate::store::{Backend, WriteTx};
use crate::{Store, StoreResult};

/// Attempts after which a failing job is dead (kept for inspection).
pub const MAX_ATTEMPTS: i64 = 10;

const COLUMNS: &str = "id, kind, job_key, payload, state, due_at, available_at, attempts, \
                       lease_owner, last_error, created_at, finished_at";

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Due at `available_at` (first run or a retry).
    Waiting,
    /// Claimed; its lease ends at `available_at`.
    Running,
    /// Finished.
    Done,
    /// Failed `MAX_ATTEMPTS` times, or failed for good.
    Dead,
    /// Called off before it ran.
    Cancelled,
}

impl JobState {
    /// Every state, in the order the operator's tools list them.
    pub const ALL: [JobState; 5] = [
        JobState::Waiting,
        JobState::Running,
        JobState::Done,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (a snowflake).
    pub id: Snowflake,
    /// What runs it, e.g. `scheduled_message`.
    pub kind: String,
    /// What it is about, unique among jobs, e.g. `scheduled:ID`.
    pub key: String,
    /// JSON for its handler.
    pub payload: String,
    /// When it should run.
    pub due_at: Timestamp,
}

/// A job row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Id.
    pub id: Snowflake,
    /// Kind.
    pub kind: String,
    /// Key.
    pub key: String,
    /// Payload (JSON).
    pub payload: String,
    /// State.
    pub state: JobState,
    /// When it should run.
    pub due_at: Timestamp,
    /// When it may next be claimed (the lease's end while running).
    pub available_at: Timestamp,
    /// Claims so far; the current claim's number while running.
    pub attempts: i64,
    /// The worker holding (or that last held) it.
    pub lease_owner: Option<String>,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When it ended (done, dead or cancelled).
    pub finished_at: Option<Timestamp>,
}

/// How a claimed attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Its effect happened (or was already there).
    Done,
    /// It failed and runs again at the given time (unless it was the last attempt).
    Retry {
        /// When to try again.
        at: Timestamp,
        /// Why it failed.
        error: String,
    },
    /// It failed for good.
    Dead {
        /// Why.
        error: String,
    },
}

impl JobOutcome {
    /// The state a job is left in when attempt number `attempt` ends like this: a retry
    /// after the last attempt makes it dead.
    pub fn state_after(&self, attempt: i64) -> JobState {
        match self {
            JobOutcome::Done => JobState::Done,
            JobOutcome::Retry { .. } if attempt < MAX_ATTEMPTS => JobState::Waiting,
            JobOutcome::Retry { .. } | JobOutcome::Dead { .. } => JobState::Dead,
        }
    }
}

/// Which jobs an operator's command applies to.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only in this state.
    pub state: Option<JobState>,
    /// Only of this kind.
    pub kind: Option<String>,
    /// At most this many (listing only).
    pub limit: Option<i64>,
}

/// Jobs in one state of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    /// State.
    pub state: JobState,
    /// Kind.
    pub kind: String,
    /// How many.
    pub count: i64,
}

fn job_from_row(r: &AnyRow) -> StoreResult<JobRecord> {
    let state: String = r.try_get("state")?;
    Ok(JobRecord {
        id: sf(r.try_get("id")?),
        kind: r.try_get("kind")?,
        key: r.try_get("job_key")?,
        payload: r.try_get("payload")?,
        state: JobState::parse(&state).unwrap_or(JobState::Dead),
        due_at: Timestamp::from_millis(r.try_get("due_at")?),
        available_at: Timestamp::from_millis(r.try_get("available_at")?),
        attempts: r.try_get("attempts")?,
        lease_owner: r.try_get("lease_owner")?,
        last_error: r.try_get("last_error")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        finished_at: r
            .try_get::<Option<i64>, _>("finished_at")?
            .map(Timestamp::from_millis),
    })
}

/// The filter's `WHERE` clause, its parameters numbered from `$1`.
fn filter_sql(f: &JobFilter) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(s) = f.state {
        binds.push(s.as_str().to_owned());
        clauses.push(format!("state = ${}", binds.len()));
    }
    if let Some(k) = &f.kind {
        binds.push(k.clone());
        clauses.push(format!("kind = ${}", binds.len()));
    }
    if clauses.is_empty() {
        ("TRUE".to_owned(), binds)
    } else {
        (clauses.join(" AND "), binds)
    }
}

/// Storage of the job queue.
impl Store {
    /// Wakes the workers of every node when `tx` commits: on PostgreSQL a `NOTIFY` on
    /// `xcord_jobs` (docs/jobs.md); on SQLite there is one node, woken in-process.
    async fn wake_workers(&self, tx: &mut WriteTx) -> StoreResult<()> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify('xcord_jobs', '')")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Enqueues a job in the caller's transaction, so it exists exactly when the change that
    /// causes it does. A job with the same key is replaced only when it is over (done, dead
    /// or cancelled); false when a live one holds the key.
    pub async fn enqueue_job(
        &self,
        tx: &mut WriteTx,
        job: &NewJob,
        now: Timestamp,
    ) -> StoreResult<bool> {
        Ok(self
            .enqueue_jobs(tx, std::slice::from_ref(job), now)
            .await?
            == 1)
    }

    /// Enqueues several jobs in the caller's transaction, a few hundred rows per
    /// statement, and wakes the workers once; how many were enqueued (see
    /// [`Store::enqueue_job`] for keys already taken).
    pub async fn enqueue_jobs(
        &self,
        tx: &mut WriteTx,
        jobs: &[NewJob],
        now: Timestamp,
    ) -> StoreResult<u64> {
        const ROWS: usize = 400;
        let mut added = 0;
        for chunk in jobs.chunks(ROWS) {
            let mut sql = String::from(
                "INSERT INTO jobs (id, kind, job_key, payload, state, due_at, available_at, attempts, created_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 5;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, 'waiting', ${}, ${}, 0, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 5,
                    chunk.len() * 5 + 1
                ));
            }
            sql.push_str(
                " ON CONFLICT (job_key) DO UPDATE SET id = excluded.id, kind = excluded.kind, payload = excluded.payload, \
                 state = 'waiting', due_at = excluded.due_at, available_at = excluded.available_at, attempts = 0, \
                 lease_owner = NULL, last_error = NULL, created_at = excluded.created_at, finished_at = NULL \
                 WHERE jobs.state IN ('done', 'dead', 'cancelled')",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for job in chunk {
                q = q
                    .bind(job.id.get())
                    .bind(job.kind.clone())
                    .bind(job.key.clone())
                    .bind(job.payload.clone())
                    .bind(job.due_at.as_millis());
            }
            added += q
                .bind(now.as_millis())
                .execute(&mut **tx)
                .await?
                .rows_affected();
        }
        if added > 0 {
            self.wake_workers(tx).await?;
        }
        Ok(added)
    }

    /// Moves a waiting job to a new due time; false when it is not waiting.
    pub async fn reschedule_job(
        &self,
        tx: &mut WriteTx,
        key: &str,
        due_at: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET due_at = $2, available_at = $2 WHERE job_key = $1 AND state = 'waiting'",
        )
        .bind(key.to_owned())
        .bind(due_at.as_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n == 1 {
            self.wake_workers(tx).await?;
        }
        Ok(n == 1)
    }

    /// Calls off a waiting job; false when it is not waiting.
    pub async fn cancel_job(
        &self,
        tx: &mut WriteTx,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE job_key = $1 AND state = 'waiting'",
        )
        .bind(key.to_owned())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Claims up to `limit` claimable jobs for `owner` until `now + lease_ms`, earliest
    /// first. On PostgreSQL rows another claimer holds are skipped (`SKIP LOCKED`); on
    /// SQLite the single writer orders claimers. With `reap`, running jobs whose last
    /// attempt's lease ran out are first made dead in the same transaction (a scan of the
    /// due jobs, which the workers ask for about once a second, not on every claim).
    pub async fn claim_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: i64,
        reap: bool,
    ) -> StoreResult<Vec<JobRecord>> {
        let mut tx = self.begin_write().await?;
        if reap {
            sqlx::query(
                "UPDATE jobs SET state = 'dead', finished_at = $1, \
             last_error = COALESCE(last_error, 'its worker stopped during the last attempt') \
             WHERE state = 'running' AND available_at <= $1 AND attempts >= $2",
            )
            .bind(now.as_millis())
            .bind(MAX_ATTEMPTS)
            .execute(&mut *tx)
            .await?;
        }
        // On PostgreSQL `= ANY(ARRAY(…))` makes the planner update the chosen rows through
        // the primary key; `IN (…)` let it hash-join the whole table on every claim.
        let (open, close) = match self.backend() {
            Backend::Postgres => ("= ANY(ARRAY(", " FOR UPDATE SKIP LOCKED))"),
            Backend::Sqlite => ("IN (", ")"),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', available_at = $2, attempts = attempts + 1, lease_owner = $3 \
             WHERE id {open}SELECT id FROM jobs WHERE state IN ('waiting', 'running') AND available_at <= $1 \
             ORDER BY available_at LIMIT $4{close} RETURNING {COLUMNS}"
        )))
        .bind(now.as_millis())
        .bind(now.as_millis() + lease_ms)
        .bind(owner.to_owned())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.available_at, j.id));
        Ok(jobs)
    }

    /// Claims one job by id if it is claimable (a broker delivered it); `None` when it is
    /// not (done, held by a live lease, not yet due, or gone).
    pub async fn claim_job(
        &self,
        id: Snowflake,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> StoreResult<Option<JobRecord>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', available_at = $3, attempts = attempts + 1, lease_owner = $4 \
             WHERE id = $1 AND state IN ('waiting', 'running') AND available_at <= $2 AND attempts < $5 \
             RETURNING {COLUMNS}"
        )))
        .bind(id.get())
        .bind(now.as_millis())
        .bind(now.as_millis() + lease_ms)
        .bind(owner.to_owned())
        .bind(MAX_ATTEMPTS)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Takes over a job that `from` (the broker's dispatch) holds for attempt `attempt`,
    /// for `owner` until `now + lease_ms`; `None` when that claim is no longer current (the
    /// job ended, or was dispatched again under a later attempt).
    pub async fn take_dispatched(
        &self,
        id: Snowflake,
        attempt: i64,
        from: &str,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> StoreResult<Option<JobRecord>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET lease_owner = $4, available_at = $5 \
             WHERE id = $1 AND attempts = $2 AND lease_owner = $3 AND state = 'running' \
             RETURNING {COLUMNS}"
        )))
        .bind(id.get())
        .bind(attempt)
        .bind(from.to_owned())
        .bind(owner.to_owned())
        .bind(now.as_millis() + lease_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Extends the leases `owner` holds on these (id, attempt) claims to `until`; the ones
    /// it still held.
    pub async fn renew_jobs(
        &self,
        owner: &str,
        claims: &[(Snowflake, i64)],
        until: Timestamp,
    ) -> StoreResult<usize> {
        if claims.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut held = 0;
        for (id, attempt) in claims {
            held += sqlx::query(
                "UPDATE jobs SET available_at = $4 WHERE id = $1 AND attempts = $2 AND lease_owner = $3 \
                 AND state = 'running'",
            )
            .bind(id.get())
            .bind(*attempt)
            .bind(owner.to_owned())
            .bind(until.as_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Ends attempt `attempt` of a job; false when that attempt no longer holds it (its
    /// lease lapsed and another worker claimed it).
    pub async fn finish_job(
        &self,
        id: Snowflake,
        owner: &str,
        attempt: i64,
        outcome: &JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        Ok(self
            .finish_jobs(owner, &[(id, attempt, outcome.clone())], now)
            .await?
            == 1)
    }

    /// Ends several attempts of `owner` in one transaction (one commit for a batch of
    /// finished jobs); how many were still held. Done ones are written by one statement.
    pub async fn finish_jobs(
        &self,
        owner: &str,
        finished: &[(Snowflake, i64, JobOutcome)],
        now: Timestamp,
    ) -> StoreResult<usize> {
        if finished.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut held = 0;
        let done: Vec<(Snowflake, i64)> = finished
            .iter()
            .filter(|(_, _, o)| *o == JobOutcome::Done)
            .map(|(id, attempt, _)| (*id, *attempt))
            .collect();
        for chunk in done.chunks(400) {
            let mut sql = String::from(
                "UPDATE jobs SET state = 'done', available_at = $2, finished_at = $2 \
                 WHERE lease_owner = $1 AND state = 'running' AND (id, attempts) IN (VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${})", 3 + 2 * i, 4 + 2 * i));
            }
            sql.push(')');
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner.to_owned())
                .bind(now.as_millis());
            for (id, attempt) in chunk {
                q = q.bind(id.get()).bind(*attempt);
            }
            held += q.execute(&mut *tx).await?.rows_affected() as usize;
        }
        for (id, attempt, outcome) in finished.iter().filter(|(_, _, o)| *o != JobOutcome::Done) {
            held += finish_in(&mut tx, *id, owner, *attempt, outcome, now).await? as usize;
        }
        if finished
            .iter()
            .any(|(_, _, o)| matches!(o, JobOutcome::Retry { .. }))
        {
            self.wake_workers(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// The earliest time a job becomes claimable, if any job is waiting or running.
    pub async fn next_job_at(&self) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> =
            sqlx::query("SELECT MIN(available_at) FROM jobs WHERE state IN ('waiting', 'running')")
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        Ok(at.map(Timestamp::from_millis))
    }

    /// Jobs matching `filter`, newest first.
    pub async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        let (clause, binds) = filter_sql(filter);
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE {clause} ORDER BY id DESC LIMIT {}",
            filter.limit.unwrap_or(100).clamp(1, 100_000)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Makes dead (or, with a state filter, other finished) jobs matching `filter` wait
    /// again from now with a fresh count of attempts; how many.
    pub async fn retry_jobs(&self, filter: &JobFilter, now: Timestamp) -> StoreResult<u64> {
        let (clause, binds) = filter_sql(filter);
        let n = binds.len();
        let sql = format!(
            "UPDATE jobs SET state = 'waiting', available_at = ${}, attempts = 0, finished_at = NULL, \
             lease_owner = NULL WHERE {clause} AND state IN ('dead', 'cancelled', 'done')",
            n + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let mut tx = self.begin_write().await?;
        let done = q.bind(now.as_millis()).execute(&mut *tx).await?;
        if done.rows_affected() > 0 {
            self.wake_workers(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Deletes finished jobs (done, dead, cancelled) matching `filter`; how many. Waiting
    /// and running jobs are never purged.
    pub async fn purge_jobs(&self, filter: &JobFilter) -> StoreResult<u64> {
        let (clause, binds) = filter_sql(filter);
        let sql =
            format!("DELETE FROM jobs WHERE {clause} AND state IN ('done', 'dead', 'cancelled')");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let mut tx = self.begin_write().await?;
        let n = q.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// How many jobs are in each state, by kind.
    pub async fn job_counts(&self) -> StoreResult<Vec<JobCount>> {
        let rows = sqlx::query("SELECT state, kind, COUNT(*) FROM jobs GROUP BY state, kind")
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let state: String = r.try_get(0)?;
            if let Some(state) = JobState::parse(&state) {
                out.push(JobCount {
                    state,
                    kind: r.try_get(1)?,
                    count: r.try_get(2)?,
                });
            }
        }
        Ok(out)
    }

    /// The due time of the oldest job that is due and not running, if any.
    pub async fn oldest_due_job(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> = sqlx::query(
            "SELECT MIN(available_at) FROM jobs WHERE state = 'waiting' AND available_at <= $1",
        )
        .bind(now.as_millis())
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        Ok(at.map(Timestamp::from_millis))
    }
}

/// Ends one attempt in the caller's transaction (see [`Store::finish_job`]).
async fn finish_in(
    tx: &mut WriteTx,
    id: Snowflake,
    owner: &str,
    attempt: i64,
    outcome: &JobOutcome,
    now: Timestamp,
) -> StoreResult<bool> {
    let state = outcome.state_after(attempt);
    let (available, error) = match outcome {
        JobOutcome::Done => (now, None),
        JobOutcome::Retry { at, error } if state == JobState::Waiting => (*at, Some(error.clone())),
        JobOutcome::Retry { error, .. } | JobOutcome::Dead { error } => (now, Some(error.clone())),
    };
    let finished = (state != JobState::Waiting).then_some(now.as_millis());
    let n = sqlx::query(
        "UPDATE jobs SET state = $4, available_at = $5, last_error = COALESCE($6, last_error), finished_at = $7 \
         WHERE id = $1 AND attempts = $2 AND lease_owner = $3 AND state = 'running'",
    )
    .bind(id.get())
    .bind(attempt)
    .bind(owner.to_owned())
    .bind(state.as_str())
    .bind(available.as_millis())
    .bind(error)
    .bind(finished)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}
