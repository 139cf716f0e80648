-- The event outbox (docs/events.md): one row per fact, written by the transaction that makes the
-- change it describes, so an event exists exactly when its change committed. Job transitions are
-- recorded by statement triggers (one multi-row insert per statement: a completer's batch of 500
-- outcomes adds its 500 rows in one insert); other facts by the statements that make them.
--
-- Order: rows are read by (txid, seq), and only from transactions older than every transaction
-- still running (`pg_snapshot_xmin`). A row can then never appear behind a position a reader has
-- passed: sequence numbers alone are handed out before commit, so a reader going by `seq` would
-- skip a slow transaction's rows. A change that follows another one (a job's claim after its
-- submission) runs in a later transaction, so it has a higher txid.
-- Off until a deployment turns it on (`EventOutbox::set_events_enabled`): nothing reads or
-- prunes the outbox yet unless a consumer does.
CREATE TABLE event_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled   boolean NOT NULL
);
INSERT INTO event_settings (singleton, enabled) VALUES (true, false);

CREATE TABLE event_outbox (
    txid        bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    id          uuid        NOT NULL,
    tenant_id   text        NOT NULL,
    type        text        NOT NULL,
    subject     text        NOT NULL,
    time        timestamptz NOT NULL DEFAULT now(),
    data        jsonb       NOT NULL,
    traceparent text,
    PRIMARY KEY (txid, seq)
);

-- Where each reader (the Kafka relay, the embedded consumers) has got to.
CREATE TABLE event_cursors (
    consumer   text        PRIMARY KEY,
    txid       bigint      NOT NULL DEFAULT 0,
    seq        bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION event_outbox_jobs() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT (SELECT enabled FROM event_settings) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
        SELECT gen_random_uuid(), n.tenant_id, 'pysaas.job.' || n.state, 'jobs/' || n.id,
               jsonb_build_object('job_id', n.id, 'kind', n.kind, 'queue', n.queue,
                   'state', n.state, 'from', o.state, 'attempt', n.attempts,
                   'max_attempts', n.max_attempts, 'worker_id', n.worker_id,
                   'created_at', n.created_at, 'run_at', n.run_at, 'started_at', n.started_at,
                   'finished_at', n.finished_at),
               n.trace_context
        FROM added n JOIN removed o ON o.id = n.id
        WHERE o.state <> n.state
        ORDER BY n.id;
    ELSE
        -- A row new to `jobs` was submitted (or re-queued by a retry of a finished job); one new
        -- to `job_history` finished: succeeded and dead only ever from `running`.
        INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
        SELECT gen_random_uuid(), n.tenant_id, 'pysaas.job.' || n.state, 'jobs/' || n.id,
               jsonb_build_object('job_id', n.id, 'kind', n.kind, 'queue', n.queue,
                   'state', n.state,
                   'from', CASE WHEN TG_TABLE_NAME = 'job_history' AND n.state <> 'cancelled'
                                THEN 'running' END,
                   'attempt', n.attempts, 'max_attempts', n.max_attempts,
                   'worker_id', n.worker_id, 'created_at', n.created_at, 'run_at', n.run_at,
                   'started_at', n.started_at, 'finished_at', n.finished_at),
               n.trace_context
        FROM added n
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER event_outbox_submitted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
CREATE TRIGGER event_outbox_moved AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
CREATE TRIGGER event_outbox_finished AFTER INSERT ON job_history
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
