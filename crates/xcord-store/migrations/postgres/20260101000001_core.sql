-- xcord core schema (PostgreSQL). Ids are snowflakes stored as 64-bit integers; times are
-- milliseconds since the Unix epoch; JSON is stored as TEXT. Keep in step with
-- ../sqlite/20260101000001_core.sql: the two lists of versions must stay identical.

CREATE TABLE users (
    id              BIGINT PRIMARY KEY,
    username        TEXT    NOT NULL,
    discriminator   TEXT    NOT NULL,
    display_name    TEXT,
    email           TEXT,               -- stored lower-cased; NULL for guests
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash   TEXT,               -- NULL for guests
    date_of_birth   TEXT,
    avatar          TEXT,
    banner          TEXT,
    bio             TEXT,
    custom_status   TEXT,
    status          TEXT    NOT NULL DEFAULT 'online',
    is_guest        BOOLEAN NOT NULL DEFAULT FALSE,
    mfa_enabled     BOOLEAN NOT NULL DEFAULT FALSE,
    mfa_secret      TEXT,               -- sealed with the data-dir key, never plain
    public_key      TEXT,
    settings        TEXT    NOT NULL DEFAULT '{}',
    flags           BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    last_login_at   BIGINT
);
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE mfa_backup_codes (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT   NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Single-use tokens mailed or handed to a user: e-mail verification, password reset,
-- MFA login tickets. Only a hash of the token is kept.
CREATE TABLE user_tokens (
    token_hash  TEXT   PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose);

CREATE TABLE sessions (
    id            BIGINT PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device        TEXT,
    user_agent    TEXT,
    ip            TEXT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every refresh token ever issued for a session; a used one presented again reveals theft.
CREATE TABLE refresh_tokens (
    token_hash  TEXT   PRIMARY KEY,
    session_id  BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Access tokens refused before they expire (logout); rows are dropped once expired.
CREATE TABLE revoked_tokens (
    jti         TEXT   PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

-- One row per direction: (a, b, friend) and (b, a, friend); blocks are one-sided.
CREATE TABLE relationships (
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    other_user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type           TEXT   NOT NULL CHECK (type IN ('friend', 'pending_outgoing', 'pending_incoming', 'blocked')),
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (user_id, other_user_id)
);
CREATE INDEX relationships_other ON relationships (other_user_id);

CREATE TABLE servers (
    id            BIGINT PRIMARY KEY,
    name          TEXT   NOT NULL,
    icon          TEXT,
    banner        TEXT,
    description   TEXT,
    owner_id      BIGINT NOT NULL REFERENCES users (id),
    vanity_url    TEXT,
    features      TEXT   NOT NULL DEFAULT '[]',
    member_count  BIGINT NOT NULL DEFAULT 0,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX servers_owner ON servers (owner_id);
CREATE UNIQUE INDEX servers_vanity_url ON servers (lower(vanity_url));

-- The @everyone role has the server's id and position 0.
CREATE TABLE roles (
    id           BIGINT PRIMARY KEY,
    server_id    BIGINT  NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    color        TEXT    NOT NULL DEFAULT '#000000',
    position     BIGINT  NOT NULL DEFAULT 0,
    permissions  BIGINT  NOT NULL DEFAULT 0,
    mentionable  BOOLEAN NOT NULL DEFAULT FALSE,
    hoisted      BOOLEAN NOT NULL DEFAULT FALSE,
    version      BIGINT  NOT NULL DEFAULT 1,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX roles_server_position ON roles (server_id, position);

CREATE TABLE members (
    server_id  BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    nickname   TEXT,
    joined_at  BIGINT NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE member_roles (
    server_id  BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    role_id    BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (server_id, user_id, role_id),
    FOREIGN KEY (server_id, user_id) REFERENCES members (server_id, user_id) ON DELETE CASCADE
);
CREATE INDEX member_roles_role ON member_roles (role_id);

-- Server channels (text, voice, category) and private ones (dm, group_dm) alike.
CREATE TABLE channels (
    id                   BIGINT PRIMARY KEY,
    server_id            BIGINT  REFERENCES servers (id) ON DELETE CASCADE,
    type                 TEXT    NOT NULL CHECK (type IN ('text', 'voice', 'category', 'dm', 'group_dm')),
    name                 TEXT,
    topic                TEXT,
    position             BIGINT  NOT NULL DEFAULT 0,
    parent_id            BIGINT  REFERENCES channels (id) ON DELETE SET NULL,
    nsfw                 BOOLEAN NOT NULL DEFAULT FALSE,
    user_limit           BIGINT,
    bitrate              BIGINT,
    rate_limit_per_user  BIGINT  NOT NULL DEFAULT 0,
    owner_id             BIGINT  REFERENCES users (id) ON DELETE SET NULL,
    icon                 TEXT,
    dm_key               TEXT,    -- 'low:high' user ids of a 1:1 DM, so create-or-get is atomic
    last_message_id      BIGINT,
    version              BIGINT  NOT NULL DEFAULT 1,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL
);
CREATE INDEX channels_server_position ON channels (server_id, position);
CREATE UNIQUE INDEX channels_dm_key ON channels (dm_key);

CREATE TABLE channel_recipients (
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_recipients_user ON channel_recipients (user_id);

CREATE TABLE permission_overwrites (
    channel_id   BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    target_id    BIGINT NOT NULL,
    target_type  TEXT   NOT NULL CHECK (target_type IN ('user', 'role')),
    allow        BIGINT NOT NULL DEFAULT 0,
    deny         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, target_id)
);

CREATE TABLE invites (
    code             TEXT   PRIMARY KEY,
    server_id        BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    channel_id       BIGINT REFERENCES channels (id) ON DELETE SET NULL,
    inviter_id       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    max_age_seconds  BIGINT NOT NULL DEFAULT 0,    -- 0: never expires
    max_uses         BIGINT NOT NULL DEFAULT 0,    -- 0: unlimited
    uses             BIGINT NOT NULL DEFAULT 0,
    expires_at       BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX invites_server ON invites (server_id);

CREATE TABLE bans (
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason      TEXT,
    banned_by   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (server_id, user_id)
);

CREATE TABLE messages (
    id                BIGINT PRIMARY KEY,
    channel_id        BIGINT  NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    author_id         BIGINT  NOT NULL REFERENCES users (id),
    content           TEXT    NOT NULL DEFAULT '',
    nonce             TEXT,
    reply_to          BIGINT,             -- a message id; no FK so a reply outlives its parent
    mention_everyone  BOOLEAN NOT NULL DEFAULT FALSE,
    mentions          TEXT    NOT NULL DEFAULT '{}',   -- {users, roles, channels}
    embeds            TEXT    NOT NULL DEFAULT '[]',
    encrypted         BOOLEAN NOT NULL DEFAULT FALSE,
    encrypted_keys    TEXT,               -- {userId: key}, stored as sent
    is_automatic      BOOLEAN NOT NULL DEFAULT FALSE,
    edited_at         BIGINT,
    deleted_at        BIGINT,             -- soft delete
    version           BIGINT  NOT NULL DEFAULT 1,
    created_at        BIGINT  NOT NULL
);
CREATE INDEX messages_channel_id ON messages (channel_id, id);
CREATE INDEX messages_author_id ON messages (author_id, id);
CREATE UNIQUE INDEX messages_nonce ON messages (channel_id, author_id, nonce) WHERE nonce IS NOT NULL;

-- Users a message mentions, for mention counts in read states.
CREATE TABLE message_mentions (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX message_mentions_user ON message_mentions (user_id, channel_id, message_id);

CREATE TABLE reactions (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji       TEXT   NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE pins (
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    pinned_by   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    pinned_at   BIGINT NOT NULL,
    PRIMARY KEY (channel_id, message_id)
);

-- Uploaded before the message that uses them; message_id is set when it is posted.
CREATE TABLE attachments (
    id            BIGINT PRIMARY KEY,
    uploader_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id    BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    message_id    BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    filename      TEXT   NOT NULL,
    content_type  TEXT   NOT NULL,
    size          BIGINT NOT NULL,
    width         BIGINT,
    height        BIGINT,
    storage_key   TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX attachments_message ON attachments (message_id);

CREATE TABLE read_states (
    user_id               BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id            BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    last_read_message_id  BIGINT NOT NULL DEFAULT 0,
    updated_at            BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    actor_id    BIGINT NOT NULL,
    action      TEXT   NOT NULL,
    target_id   BIGINT,
    reason      TEXT,
    changes     TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX audit_log_server ON audit_log (server_id, id);
