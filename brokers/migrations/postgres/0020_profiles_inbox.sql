-- Users' profile and preferences items, when the store keeps them (`[profiles] backend =
-- "store"`; DynamoDB keeps them otherwise). `version` counts writes: conditional updates on it
-- make a stale write fail instead of overwriting.
CREATE TABLE profile_items (
    user_id    uuid        NOT NULL,
    item       text        NOT NULL CHECK (item IN ('profile', 'preferences')),
    version    bigint      NOT NULL CHECK (version > 0),
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, item)
);

-- In-app notifications: one row per recipient and cause (`source`: the job that made it).
CREATE TABLE inbox_notifications (
    id         uuid        PRIMARY KEY,
    tenant_id  text        NOT NULL,
    user_id    uuid        NOT NULL,
    source     text        NOT NULL,
    category   text        NOT NULL,
    title      text        NOT NULL,
    body       text        NOT NULL,
    link       text,
    created_at timestamptz NOT NULL,
    read_at    timestamptz
);
CREATE UNIQUE INDEX inbox_notifications_once ON inbox_notifications (source, user_id);
CREATE INDEX inbox_notifications_user ON inbox_notifications (tenant_id, user_id, id DESC);
CREATE INDEX inbox_notifications_unread ON inbox_notifications (tenant_id, user_id)
    WHERE read_at IS NULL;
CREATE INDEX inbox_notifications_erase ON inbox_notifications (user_id);

-- Data access requests: the document, once built, downloadable by the same user in the same
-- tenant.
CREATE TABLE profile_exports (
    id           uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    user_id      uuid        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('pending', 'ready')),
    document     jsonb,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX profile_exports_user ON profile_exports (user_id);

-- Erasures: when and how much; who only until it is done (`user_id` is cleared with the rest).
CREATE TABLE erasures (
    id           uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    user_id      uuid,
    status       text        NOT NULL CHECK (status IN ('pending', 'done')),
    counts       jsonb,
    requested_at timestamptz NOT NULL,
    completed_at timestamptz
);
