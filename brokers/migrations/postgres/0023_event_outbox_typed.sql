-- What recording costs (docs/benchmarks.md, "What the event streams cost"):
--
-- * A job transition is recorded as typed columns copied from the job's row; its event id,
--   type, subject and data are made by the reader (`sql/events.rs`), so the changing statement
--   builds no JSON, formats no timestamp and draws no random id. The id is derived from the
--   row's place and a salt drawn once per database, so that it is the same at every read.
-- * The recording triggers exist only while events are on: `event_outbox_switch` creates or drops
--   them, so a store with events off pays nothing (no transition tables either).
-- Facts written by application code (`record_fact`) keep their id, type, subject and data.
ALTER TABLE event_outbox
    ALTER COLUMN id DROP NOT NULL,
    ALTER COLUMN type DROP NOT NULL,
    ALTER COLUMN subject DROP NOT NULL,
    ALTER COLUMN data DROP NOT NULL,
    ADD COLUMN job_id       uuid,
    ADD COLUMN kind         text,
    ADD COLUMN queue        text,
    ADD COLUMN state        text,
    ADD COLUMN from_state   text,
    ADD COLUMN attempt      integer,
    ADD COLUMN max_attempts integer,
    ADD COLUMN worker_id    text,
    ADD COLUMN created_at   timestamptz,
    ADD COLUMN run_at       timestamptz,
    ADD COLUMN started_at   timestamptz,
    ADD COLUMN finished_at  timestamptz,
    ADD CONSTRAINT event_outbox_fact_or_job CHECK (
        (id IS NOT NULL AND type IS NOT NULL AND subject IS NOT NULL AND data IS NOT NULL)
        OR (job_id IS NOT NULL AND kind IS NOT NULL AND queue IS NOT NULL AND state IS NOT NULL
            AND attempt IS NOT NULL AND max_attempts IS NOT NULL AND created_at IS NOT NULL
            AND run_at IS NOT NULL));

-- 62 random bits (a bigint's sign bit and one more left clear).
ALTER TABLE event_settings
    ADD COLUMN id_salt bigint NOT NULL
        DEFAULT (('x' || substr(md5(random()::text || clock_timestamp()::text), 1, 16))::bit(64)::bigint
                 & 4611686018427387903);

DROP TRIGGER event_outbox_submitted ON jobs;
DROP TRIGGER event_outbox_moved ON jobs;
DROP TRIGGER event_outbox_finished ON job_history;

CREATE OR REPLACE FUNCTION event_outbox_jobs() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO event_outbox (tenant_id, job_id, kind, queue, state, from_state, attempt,
                                  max_attempts, worker_id, created_at, run_at, started_at,
                                  finished_at, traceparent)
        SELECT n.tenant_id, n.id, n.kind, n.queue, n.state, o.state, n.attempts, n.max_attempts,
               n.worker_id, n.created_at, n.run_at, n.started_at, n.finished_at, n.trace_context
        FROM added n JOIN removed o ON o.id = n.id
        WHERE o.state <> n.state
        ORDER BY n.id;
    ELSE
        -- A row new to `jobs` was submitted (or re-queued by a retry of a finished job); one new
        -- to `job_history` finished: succeeded and dead only ever from `running`.
        INSERT INTO event_outbox (tenant_id, job_id, kind, queue, state, from_state, attempt,
                                  max_attempts, worker_id, created_at, run_at, started_at,
                                  finished_at, traceparent)
        SELECT n.tenant_id, n.id, n.kind, n.queue, n.state,
               CASE WHEN TG_TABLE_NAME = 'job_history' AND n.state <> 'cancelled'
                    THEN 'running' END,
               n.attempts, n.max_attempts, n.worker_id, n.created_at, n.run_at, n.started_at,
               n.finished_at, n.trace_context
        FROM added n
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END $$;

-- Turns recording on or off for every process of the store. Calls queue on the settings row, so
-- a second caller finds the first one's triggers in place. It runs with its owner's rights (the
-- role that migrated, which owns the tables): a runtime role that may not create triggers can
-- still switch events.
CREATE FUNCTION event_outbox_switch(turn_on boolean) RETURNS void LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE event_settings SET enabled = turn_on;
    IF turn_on = EXISTS (SELECT 1 FROM pg_trigger
                         WHERE tgrelid = 'jobs'::regclass AND tgname = 'event_outbox_submitted') THEN
        RETURN;  -- as asked already
    END IF;
    IF turn_on THEN
        BEGIN
            CREATE TRIGGER event_outbox_submitted AFTER INSERT ON jobs
                REFERENCING NEW TABLE AS added
                FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
            CREATE TRIGGER event_outbox_moved AFTER UPDATE ON jobs
                REFERENCING OLD TABLE AS removed NEW TABLE AS added
                FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
            CREATE TRIGGER event_outbox_finished AFTER INSERT ON job_history
                REFERENCING NEW TABLE AS added
                FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
        END;
    ELSE
        DROP TRIGGER event_outbox_submitted ON jobs;
        DROP TRIGGER event_outbox_moved ON jobs;
        DROP TRIGGER event_outbox_finished ON job_history;
    END IF;
END $$;

SELECT event_outbox_switch(enabled) FROM event_settings;
