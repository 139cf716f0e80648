-- Profile items, in-app notifications, data exports and erasures (see the PostgreSQL
-- migration 0020).
CREATE TABLE profile_items (
    user_id    TEXT    NOT NULL,
    item       TEXT    NOT NULL CHECK (item IN ('profile', 'preferences')),
    version    INTEGER NOT NULL CHECK (version > 0),
    data       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, item)
) STRICT;

CREATE TABLE inbox_notifications (
    id         TEXT    PRIMARY KEY NOT NULL,
    tenant_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    link       TEXT,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
) STRICT;
CREATE UNIQUE INDEX inbox_notifications_once ON inbox_notifications (source, user_id);
CREATE INDEX inbox_notifications_user ON inbox_notifications (tenant_id, user_id, id DESC);
CREATE INDEX inbox_notifications_unread ON inbox_notifications (tenant_id, user_id)
    WHERE read_at IS NULL;
CREATE INDEX inbox_notifications_erase ON inbox_notifications (user_id);

CREATE TABLE profile_exports (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'ready')),
    document     TEXT,
    created_at   INTEGER NOT NULL,
    completed_at INTEGER
) STRICT;
CREATE INDEX profile_exports_user ON profile_exports (user_id);

CREATE TABLE erasures (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL,
    user_id      TEXT,
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'done')),
    counts       TEXT,
    requested_at INTEGER NOT NULL,
    completed_at INTEGER
) STRICT;
