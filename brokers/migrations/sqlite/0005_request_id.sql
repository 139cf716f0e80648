-- The X-Request-Id of the API request that submitted the job, to follow one request from the
-- gateway's access log to the worker's logs.
ALTER TABLE jobs ADD COLUMN request_id TEXT;
