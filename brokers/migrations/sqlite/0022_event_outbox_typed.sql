-- What recording costs (see the PostgreSQL migration of the same name): a job transition is
-- recorded as typed columns copied from the job's row, its id, type, subject and data made by
-- the reader; the recording triggers exist only while events are on (created and dropped by the
-- store, `sql/events.rs`, which also creates them after migrating when events are on).
DROP TRIGGER event_outbox_submitted;
DROP TRIGGER event_outbox_moved;
DROP TRIGGER event_outbox_finished;

ALTER TABLE event_outbox RENAME TO event_outbox_old;

CREATE TABLE event_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    txid         INTEGER NOT NULL DEFAULT 0,
    id           TEXT,
    tenant_id    TEXT    NOT NULL,
    type         TEXT,
    subject      TEXT,
    time         INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)),
    data         TEXT,
    traceparent  TEXT,
    job_id       TEXT,
    kind         TEXT,
    queue        TEXT,
    state        TEXT,
    from_state   TEXT,
    attempt      INTEGER,
    max_attempts INTEGER,
    worker_id    TEXT,
    created_at   INTEGER,
    run_at       INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER,
    CHECK ((id IS NOT NULL AND type IS NOT NULL AND subject IS NOT NULL AND data IS NOT NULL)
        OR (job_id IS NOT NULL AND kind IS NOT NULL AND queue IS NOT NULL AND state IS NOT NULL
            AND attempt IS NOT NULL AND max_attempts IS NOT NULL AND created_at IS NOT NULL
            AND run_at IS NOT NULL))
) STRICT;

INSERT INTO event_outbox (seq, txid, id, tenant_id, type, subject, time, data, traceparent)
SELECT seq, txid, id, tenant_id, type, subject, time, data, traceparent FROM event_outbox_old;

-- Numbers already handed out (of facts pruned since) are never handed out again: a cursor may
-- be past them.
CREATE TEMP TABLE event_outbox_seq AS
    SELECT max(seq) AS seq FROM sqlite_sequence WHERE name IN ('event_outbox', 'event_outbox_old');
DELETE FROM sqlite_sequence WHERE name IN ('event_outbox', 'event_outbox_old');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'event_outbox', seq FROM event_outbox_seq WHERE seq IS NOT NULL;
DROP TABLE event_outbox_seq;

DROP TABLE event_outbox_old;

-- 62 random bits, drawn once: event ids of job transitions are derived from it and the row's place.
ALTER TABLE event_settings ADD COLUMN id_salt INTEGER NOT NULL DEFAULT 0;
UPDATE event_settings SET id_salt = random() & 4611686018427387903;
