-- The event outbox (see the PostgreSQL migration of the same name). SQLite has one writer at a
-- time, so rows commit in `seq` order and a reader goes by `seq` alone (`txid` stays 0). Row
-- triggers record every job transition in the transaction that makes it.
-- Off until a deployment turns it on, as on PostgreSQL.
CREATE TABLE event_settings (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    enabled   INTEGER NOT NULL
) STRICT;
INSERT INTO event_settings (singleton, enabled) VALUES (1, 0);

CREATE TABLE event_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    txid        INTEGER NOT NULL DEFAULT 0,
    -- A random (version 4) UUID.
    id          TEXT    NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                    || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1)
                    || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    tenant_id   TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    time        INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)),
    data        TEXT    NOT NULL,
    traceparent TEXT
) STRICT;

CREATE TABLE event_cursors (
    consumer   TEXT    PRIMARY KEY NOT NULL,
    txid       INTEGER NOT NULL DEFAULT 0,
    seq        INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TRIGGER event_outbox_submitted AFTER INSERT ON jobs
    WHEN (SELECT enabled FROM event_settings) BEGIN
    INSERT INTO event_outbox (tenant_id, type, subject, data, traceparent) VALUES (
        NEW.tenant_id, 'pysaas.job.' || NEW.state, 'jobs/' || NEW.id,
        json_object('job_id', NEW.id, 'kind', NEW.kind, 'queue', NEW.queue, 'state', NEW.state,
            'from', NULL, 'attempt', NEW.attempts, 'max_attempts', NEW.max_attempts,
            'worker_id', NEW.worker_id,
            'created_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.created_at / 1000000.0, 'unixepoch'),
            'run_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.run_at / 1000000.0, 'unixepoch'),
            'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.started_at / 1000000.0, 'unixepoch'),
            'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.finished_at / 1000000.0, 'unixepoch')),
        NEW.trace_context);
END;

CREATE TRIGGER event_outbox_moved AFTER UPDATE OF state ON jobs
    WHEN OLD.state <> NEW.state AND (SELECT enabled FROM event_settings) BEGIN
    INSERT INTO event_outbox (tenant_id, type, subject, data, traceparent) VALUES (
        NEW.tenant_id, 'pysaas.job.' || NEW.state, 'jobs/' || NEW.id,
        json_object('job_id', NEW.id, 'kind', NEW.kind, 'queue', NEW.queue, 'state', NEW.state,
            'from', OLD.state, 'attempt', NEW.attempts, 'max_attempts', NEW.max_attempts,
            'worker_id', NEW.worker_id,
            'created_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.created_at / 1000000.0, 'unixepoch'),
            'run_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.run_at / 1000000.0, 'unixepoch'),
            'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.started_at / 1000000.0, 'unixepoch'),
            'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.finished_at / 1000000.0, 'unixepoch')),
        NEW.trace_context);
END;

CREATE TRIGGER event_outbox_finished AFTER INSERT ON job_history
    WHEN (SELECT enabled FROM event_settings) BEGIN
    INSERT INTO event_outbox (tenant_id, type, subject, data, traceparent) VALUES (
        NEW.tenant_id, 'pysaas.job.' || NEW.state, 'jobs/' || NEW.id,
        json_object('job_id', NEW.id, 'kind', NEW.kind, 'queue', NEW.queue, 'state', NEW.state,
            'from', CASE WHEN NEW.state <> 'cancelled' THEN 'running' END,
            'attempt', NEW.attempts, 'max_attempts', NEW.max_attempts,
            'worker_id', NEW.worker_id,
            'created_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.created_at / 1000000.0, 'unixepoch'),
            'run_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.run_at / 1000000.0, 'unixepoch'),
            'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.started_at / 1000000.0, 'unixepoch'),
            'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.finished_at / 1000000.0, 'unixepoch')),
        NEW.trace_context);
END;
