-- Settings of the deployment that its nodes decide once and share, e.g. the default
-- server `xcord serve --default-server NAME` created (docs/compat.md).
CREATE TABLE instance_settings (
    name        TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL
);
