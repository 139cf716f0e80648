-- Cheaper recording (bench/outbox-sql.sh):
-- - The outbox keeps each fact's data as `json` (its text), no longer `jsonb`. Nothing queries
--   inside it: it is written once and read once by each consumer, who parses it anyway; a
--   `jsonb` document was built (keys sorted and de-duplicated) only to be turned back into text
--   for every read. Application facts bound as `jsonb` are stored through the assignment cast.
-- - A job transition is recorded as a positional array, not an object with its member names:
--   [job_id, kind, queue, state, from, attempt, max_attempts, worker_id, created_at, run_at,
--    started_at, finished_at]
--   about half the bytes, and most of what building the object cost. The event reader names
--   the members (`pysaas_jobs::events::RecordedTransition`); it still reads the objects of
--   rows recorded before.
ALTER TABLE event_outbox ALTER COLUMN data TYPE json USING data::json;

CREATE OR REPLACE FUNCTION event_outbox_jobs() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    -- A row new to `jobs` was submitted (or re-queued by a retry of a finished job); one new
    -- to `job_history` finished: succeeded and dead only ever from `running`.
    INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
    SELECT gen_random_uuid(), n.tenant_id, 'pysaas.job.' || n.state, 'jobs/' || n.id,
           json_build_array(n.id, n.kind, n.queue, n.state,
               CASE WHEN TG_TABLE_NAME = 'job_history' AND n.state <> 'cancelled'
                    THEN 'running' END,
               n.attempts, n.max_attempts, n.worker_id, n.created_at, n.run_at, n.started_at,
               n.finished_at),
           n.trace_context
    FROM added n
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION event_outbox_job_moved() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.state = 'running' THEN
        INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
        VALUES (gen_random_uuid(), OLD.tenant_id, 'pysaas.job.running', 'jobs/' || OLD.id,
                json_build_array(OLD.id, OLD.kind, OLD.queue, 'running', 'queued', OLD.attempts,
                    OLD.max_attempts, OLD.worker_id, OLD.created_at, OLD.run_at, OLD.started_at,
                    NULL),
                OLD.trace_context);
    END IF;
    INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent)
    VALUES (gen_random_uuid(), NEW.tenant_id, 'pysaas.job.' || NEW.state, 'jobs/' || NEW.id,
            json_build_array(NEW.id, NEW.kind, NEW.queue, NEW.state, OLD.state, NEW.attempts,
                NEW.max_attempts, NEW.worker_id, NEW.created_at, NEW.run_at, NEW.started_at,
                NEW.finished_at),
            NEW.trace_context);
    RETURN NULL;
END $$;
