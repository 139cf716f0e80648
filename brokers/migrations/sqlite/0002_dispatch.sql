-- When a message broker last announced the job (NULL: not yet, or queued again since).
ALTER TABLE jobs ADD COLUMN dispatched_at INTEGER;
CREATE INDEX jobs_undispatched ON jobs (run_at) WHERE state = 'queued' AND dispatched_at IS NULL;
CREATE INDEX jobs_dispatched ON jobs (dispatched_at) WHERE state = 'queued' AND dispatched_at IS NOT NULL;
