-- The durable job queue (docs/jobs.md). A job waits until `available_at`; a worker claims
-- it by setting a lease (`state = 'running'`, `available_at` = the lease's end), renews the
-- lease while it works, and ends it as done, waiting again (a retry, with backoff) or dead.
-- A running job whose lease ran out is claimable again, so a dead node's work is taken
-- over. `attempts` counts claims and fences a worker whose lease was taken from it.
CREATE TABLE jobs (
    id            BIGINT  PRIMARY KEY,
    kind          TEXT    NOT NULL,
    job_key       TEXT    NOT NULL UNIQUE,   -- what it is about, e.g. scheduled:ID
    payload       TEXT    NOT NULL DEFAULT '{}',
    state         TEXT    NOT NULL,          -- waiting, running, done, dead, cancelled
    due_at        BIGINT  NOT NULL,          -- when it should run (ms)
    available_at  BIGINT  NOT NULL,          -- when it may next be claimed (ms)
    attempts      BIGINT  NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    last_error    TEXT,
    created_at    BIGINT  NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX jobs_claimable ON jobs (available_at) WHERE state IN ('waiting', 'running');

-- Scheduled messages (SPEC §6). `sending` is internal: the job is posting it, so it can no
-- longer be edited or cancelled (shown as `scheduled`).
CREATE TABLE scheduled_messages (
    id              BIGINT  PRIMARY KEY,
    channel_id      BIGINT  NOT NULL,
    author_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content         TEXT    NOT NULL,
    reply_to        BIGINT,
    attachment_ids  TEXT    NOT NULL DEFAULT '[]',
    send_at         BIGINT  NOT NULL,
    status          TEXT    NOT NULL,        -- scheduled, sending, sent, failed, cancelled
    message_id      BIGINT,
    failure_reason  TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX scheduled_messages_author ON scheduled_messages (author_id, status, id);
CREATE INDEX scheduled_messages_channel ON scheduled_messages (channel_id, author_id, status);

-- Automatic messages (seed 003's AutoMessage): one row per planned pair.
CREATE TABLE auto_messages (
    id           BIGINT  PRIMARY KEY,
    sender_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    receiver_id  BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content      TEXT    NOT NULL,
    send_date    BIGINT  NOT NULL,
    is_queued    INTEGER NOT NULL DEFAULT 0,
    is_sent      INTEGER NOT NULL DEFAULT 0,
    queued_at    BIGINT,
    sent_at      BIGINT,
    message_id   BIGINT,
    failure_reason TEXT,
    planned_at   BIGINT  NOT NULL
);
CREATE INDEX auto_messages_planned ON auto_messages (planned_at);

-- One row per cron tick that was planned: the first node to insert it plans the tick.
CREATE TABLE cron_ticks (
    name     TEXT    NOT NULL,
    tick_at  BIGINT  NOT NULL,
    node_id  BIGINT  NOT NULL,
    PRIMARY KEY (name, tick_at)
);
