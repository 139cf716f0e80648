-- Webhook endpoints a tenant registers (docs/domains.md, "Webhook endpoints") and the delivery
-- log: one row per event and endpoint (a replay adds another), with its last attempt.
CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    tenant_id            text        NOT NULL,
    url                  text        NOT NULL,
    -- Space-separated event types; `*` takes every type.
    event_types          text        NOT NULL,
    -- Signs deliveries (HMAC-SHA256); shown to the tenant once, at creation and rotation.
    secret               text        NOT NULL,
    enabled              boolean     NOT NULL DEFAULT true,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    disabled_reason      text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    tenant_id       text        NOT NULL,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    response_code   integer,
    latency_ms      integer,
    last_error      text,
    replay_of       uuid,
    created_at      timestamptz NOT NULL,
    last_attempt_at timestamptz
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);
-- An event reaches an endpoint once (replays aside), however often its fan-out runs.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (event_id, endpoint_id)
    WHERE replay_of IS NULL;
