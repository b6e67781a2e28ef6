-- Gateway resume across restarts and nodes: every dispatched event is kept for the resume
-- window, and a node that shuts down leaves its sessions here so that any node can resume
-- them (SPEC §4, "resume from the database").

-- Every event a node publishes, written before it reaches the bus. `id` is a snowflake
-- (time-ordered), so pruning and "events since" are range scans on the key.
CREATE TABLE gateway_events (
    id BIGINT PRIMARY KEY,
    topic TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);

-- What a node's dispatcher had routed when it stopped: the newest event id and the ids of
-- every event it routed shortly before (JSON array), so a resume replays exactly the
-- events that node never routed.
CREATE TABLE gateway_checkpoints (
    id BIGINT PRIMARY KEY,
    high_water BIGINT NOT NULL,
    seen TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Sessions a node left behind when it stopped, until resumed or expired.
CREATE TABLE gateway_sessions (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    auth_session_id BIGINT NOT NULL,
    auth_expires_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    frames TEXT NOT NULL,
    checkpoint_id BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX gateway_sessions_expiry ON gateway_sessions (expires_at);
