-- Webhook endpoints and their delivery log (see the PostgreSQL migration 0019).
CREATE TABLE webhook_endpoints (
    id                   TEXT    PRIMARY KEY NOT NULL,
    tenant_id            TEXT    NOT NULL,
    url                  TEXT    NOT NULL,
    event_types          TEXT    NOT NULL,
    secret               TEXT    NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id              TEXT    PRIMARY KEY NOT NULL,
    tenant_id       TEXT    NOT NULL,
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    response_code   INTEGER,
    latency_ms      INTEGER,
    last_error      TEXT,
    replay_of       TEXT,
    created_at      INTEGER NOT NULL,
    last_attempt_at INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);
-- An event reaches an endpoint once (replays aside), however often its fan-out runs.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (event_id, endpoint_id)
    WHERE replay_of IS NULL;
