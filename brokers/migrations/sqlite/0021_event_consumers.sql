-- What the event consumers make of the streams (see the PostgreSQL migration of the same name).
CREATE TABLE audit_log (
    event_id    TEXT    PRIMARY KEY NOT NULL,
    tenant_id   TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    time        INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    traceparent TEXT
) STRICT;
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, time DESC, event_id DESC);
CREATE INDEX audit_log_by_subject ON audit_log (tenant_id, subject, time DESC);

CREATE TABLE analytics_seen (
    event_id TEXT    PRIMARY KEY NOT NULL,
    seen_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX analytics_seen_by_time ON analytics_seen (seen_at);

CREATE TABLE analytics_jobs (
    tenant_id   TEXT    NOT NULL,
    minute      INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    queue       TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    bucket      INTEGER NOT NULL,
    jobs        INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, minute, kind, queue, outcome, bucket)
) STRICT;

CREATE TABLE analytics_submissions (
    tenant_id TEXT    NOT NULL,
    minute    INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    queue     TEXT    NOT NULL,
    jobs      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, minute, kind, queue)
) STRICT;
