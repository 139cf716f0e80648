-- What the event consumers make of the streams (docs/events.md): the audit log, and the
-- analytics rollups with the ids they have counted (so that an event delivered twice counts
-- once). Written by `pysaas analytics` from Kafka, or by the embedded consumers from the outbox.
CREATE TABLE audit_log (
    event_id    uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    type        text        NOT NULL,
    subject     text        NOT NULL,
    time        timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    traceparent text
);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, time DESC, event_id DESC);
CREATE INDEX audit_log_by_subject ON audit_log (tenant_id, subject, time DESC);

CREATE TABLE analytics_seen (
    event_id uuid        PRIMARY KEY,
    seen_at  timestamptz NOT NULL
);
CREATE INDEX analytics_seen_by_time ON analytics_seen (seen_at);

-- Finished jobs per minute, kind, queue and outcome, split by duration bucket (the bounds of
-- store::stats::WAIT_BOUNDS_MS; -1: no duration, a cancel) so percentiles read off the rows.
CREATE TABLE analytics_jobs (
    tenant_id   text        NOT NULL,
    minute      timestamptz NOT NULL,
    kind        text        NOT NULL,
    queue       text        NOT NULL,
    outcome     text        NOT NULL,
    bucket      smallint    NOT NULL,
    jobs        bigint      NOT NULL,
    attempts    bigint      NOT NULL,
    duration_ms bigint      NOT NULL,
    PRIMARY KEY (tenant_id, minute, kind, queue, outcome, bucket)
);

CREATE TABLE analytics_submissions (
    tenant_id text        NOT NULL,
    minute    timestamptz NOT NULL,
    kind      text        NOT NULL,
    queue     text        NOT NULL,
    jobs      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, minute, kind, queue)
);
