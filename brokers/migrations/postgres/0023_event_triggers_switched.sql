-- The recording triggers exist only while events are on: `event_outbox_switch` creates or drops
-- them (`EventOutbox::set_events_enabled`), so a store with events off pays nothing — no trigger,
-- no transition tables, no flag read per statement. What a trigger records is unchanged (one
-- JSON document per transition). Recording the transitions in typed columns instead, with the
-- document made by the reader, was tried and measured slower under the drain's concurrency
-- (docs/benchmarks.md), so it was not kept.
DROP TRIGGER event_outbox_submitted ON jobs;
DROP TRIGGER event_outbox_moved ON jobs;
DROP TRIGGER event_outbox_finished ON job_history;

-- As in 0021, without the flag: a trigger that exists records.
CREATE OR REPLACE FUNCTION event_outbox_jobs() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
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
        CREATE TRIGGER event_outbox_submitted AFTER INSERT ON jobs
            REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
        CREATE TRIGGER event_outbox_moved AFTER UPDATE ON jobs
            REFERENCING OLD TABLE AS removed NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
        CREATE TRIGGER event_outbox_finished AFTER INSERT ON job_history
            REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
    ELSE
        DROP TRIGGER event_outbox_submitted ON jobs;
        DROP TRIGGER event_outbox_moved ON jobs;
        DROP TRIGGER event_outbox_finished ON job_history;
    END IF;
END $$;

SELECT event_outbox_switch(enabled) FROM event_settings;
