-- Messages: full-text search (a generated tsvector with a GIN index) and read-state lookups.
-- Only plain, live messages are indexed: encrypted payloads and deleted messages never are.
-- The 'simple' configuration: messages come in many languages, so no stemming is assumed.
-- The SQLite twin of this version uses FTS5 instead.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    CASE WHEN encrypted OR deleted_at IS NOT NULL THEN NULL ELSE to_tsvector('simple', content) END
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);

CREATE INDEX pins_channel_time ON pins (channel_id, pinned_at);
CREATE INDEX attachments_uploader ON attachments (uploader_id, channel_id);
