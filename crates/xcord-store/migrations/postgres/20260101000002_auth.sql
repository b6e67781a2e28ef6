-- Accounts and authentication.
-- The last TOTP time step accepted for a user: a code is accepted at most once (RFC 6238 §5.2).
ALTER TABLE users ADD COLUMN mfa_last_step BIGINT;
-- Wrong codes tried against an MFA login ticket; a ticket dies after a few.
ALTER TABLE user_tokens ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
-- Listing a user's sessions in order of creation.
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
-- Prefix search on usernames in any collation (LIKE 'abc%' needs text_pattern_ops outside the C locale).
CREATE INDEX users_username_prefix ON users (lower(username) text_pattern_ops);
