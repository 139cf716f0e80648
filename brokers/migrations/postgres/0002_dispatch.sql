-- When a message broker last announced the job (NULL: not yet, or queued again since).
-- The relay publishes queued rows a broker has not been told about, so a broker outage at
-- enqueue time delays a job but never loses it.
ALTER TABLE jobs ADD COLUMN dispatched_at timestamptz;
CREATE INDEX jobs_undispatched ON jobs (run_at) WHERE state = 'queued' AND dispatched_at IS NULL;
CREATE INDEX jobs_dispatched ON jobs (dispatched_at) WHERE state = 'queued' AND dispatched_at IS NOT NULL;
