-- The queue list counts a tenant's finished jobs by queue and state: an index-only scan of this
-- (a scan of the whole history otherwise).
CREATE INDEX job_history_counts ON job_history (tenant_id, queue, state);
