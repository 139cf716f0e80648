-- A claim (queued → running) records no row of its own: the drain's hottest statement then pays
-- for no trigger at all (a row trigger's WHEN is false for it, so no transition tables are kept
-- and nothing is inserted). The attempt's start is recorded when the attempt ends:
-- - by the fact of its outcome, when it finished (succeeded, dead): the history row still holds
--   the attempt's worker, start and number, and the event reader makes the `pysaas.job.running`
--   event out of it (`events_of`);
-- - by a `pysaas.job.running` row made from the row as it was (OLD), when it left `running` for
--   another hot state (retrying, or queued again by a rescue or a release), below;
-- - by the cancel, when a running job is cancelled (the store's cancel statement).
-- A start recorded late keeps the recording time as its outbox time (the backlog's age, pruning
-- and replay go by it); its event's time is the attempt's start (`events_of`). Before, half of
-- what recording cost was the claim's (bench/outbox-sql.sh).

-- Statement triggers for inserts (submissions, the history's outcomes), as before.
CREATE OR REPLACE FUNCTION event_outbox_jobs() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
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
    RETURN NULL;
END $$;

-- A row trigger for moves within the hot table, fired only when the state changes to anything
-- but `running`.
CREATE FUNCTION event_outbox_job_moved() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.state = 'running' THEN
        -- The attempt that ends here started when it was claimed (always from `queued`).
        INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
        VALUES (gen_random_uuid(), OLD.tenant_id, 'pysaas.job.running', 'jobs/' || OLD.id,
                jsonb_build_object('job_id', OLD.id, 'kind', OLD.kind, 'queue', OLD.queue,
                    'state', 'running', 'from', 'queued', 'attempt', OLD.attempts,
                    'max_attempts', OLD.max_attempts, 'worker_id', OLD.worker_id,
                    'created_at', OLD.created_at, 'run_at', OLD.run_at,
                    'started_at', OLD.started_at, 'finished_at', NULL),
                OLD.trace_context);
    END IF;
    INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
    VALUES (gen_random_uuid(), NEW.tenant_id, 'pysaas.job.' || NEW.state, 'jobs/' || NEW.id,
            jsonb_build_object('job_id', NEW.id, 'kind', NEW.kind, 'queue', NEW.queue,
                'state', NEW.state, 'from', OLD.state, 'attempt', NEW.attempts,
                'max_attempts', NEW.max_attempts, 'worker_id', NEW.worker_id,
                'created_at', NEW.created_at, 'run_at', NEW.run_at,
                'started_at', NEW.started_at, 'finished_at', NEW.finished_at),
            NEW.trace_context);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION event_outbox_switch(turn_on boolean) RETURNS void LANGUAGE plpgsql
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
        CREATE TRIGGER event_outbox_moved AFTER UPDATE OF state ON jobs
            FOR EACH ROW WHEN (OLD.state <> NEW.state AND NEW.state <> 'running')
            EXECUTE FUNCTION event_outbox_job_moved();
        CREATE TRIGGER event_outbox_finished AFTER INSERT ON job_history
            REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_jobs();
    ELSE
        DROP TRIGGER event_outbox_submitted ON jobs;
        DROP TRIGGER event_outbox_moved ON jobs;
        DROP TRIGGER event_outbox_finished ON job_history;
    END IF;
END $$;

-- A store with events on gets the new moves trigger now.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgrelid = 'jobs'::regclass AND tgname = 'event_outbox_moved') THEN
        DROP TRIGGER event_outbox_moved ON jobs;
        CREATE TRIGGER event_outbox_moved AFTER UPDATE OF state ON jobs
            FOR EACH ROW WHEN (OLD.state <> NEW.state AND NEW.state <> 'running')
            EXECUTE FUNCTION event_outbox_job_moved();
    END IF;
END $$;
