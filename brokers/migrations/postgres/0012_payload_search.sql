-- Payload search (`payload @> '{"user_id":42}'`) through a GIN index on each table a job lives
-- in, as Oban and Que index their job arguments. `jsonb_path_ops` indexes only what `@>` needs
-- (smaller and cheaper to insert into than the default operator class). Jobs with an empty
-- payload (`{}`: no member to find) are left out, so they cost no index write; the search says
-- `payload <> '{}'` to use the index. The planner still reads newest-first by id when the
-- searched value is common. With a large history, create these by hand first (`CREATE INDEX
-- CONCURRENTLY IF NOT EXISTS …` with the same definition): this migration then skips them.
CREATE INDEX IF NOT EXISTS jobs_payload ON jobs USING gin (payload jsonb_path_ops)
  WHERE payload <> '{}'::jsonb;
CREATE INDEX IF NOT EXISTS job_history_payload ON job_history USING gin (payload jsonb_path_ops)
  WHERE payload <> '{}'::jsonb;
