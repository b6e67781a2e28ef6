-- Messages: full-text search (SQLite FTS5 over the messages table) and read-state lookups.
-- Only plain, live messages are indexed: encrypted payloads and deleted messages never are.
-- The PostgreSQL twin of this version uses a generated tsvector instead.
CREATE VIRTUAL TABLE messages_fts USING fts5(content, content = 'messages', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.encrypted = 0 AND new.deleted_at IS NULL
BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.encrypted = 0 AND old.deleted_at IS NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, deleted_at ON messages
WHEN old.encrypted = 0
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) SELECT 'delete', old.id, old.content WHERE old.deleted_at IS NULL;
    INSERT INTO messages_fts (rowid, content) SELECT new.id, new.content WHERE new.deleted_at IS NULL;
END;

CREATE INDEX pins_channel_time ON pins (channel_id, pinned_at);
CREATE INDEX attachments_uploader ON attachments (uploader_id, channel_id);
