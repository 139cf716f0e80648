-- Execution rate limits shared by every worker process. Each limit (a kind or a queue, over all
-- tenants or one tenant's) keeps its GCRA state: the theoretical arrival time of the next start,
-- in microseconds since the epoch by the database's clock. A job whose reserved start lies
-- ahead goes back to `scheduled` until then with a grant for the attempt it will run as, so
-- that it does not reserve a second start when it returns.
CREATE TABLE rate_limits (
    key text COLLATE "C" PRIMARY KEY,
    tat bigint NOT NULL
);
CREATE TABLE rate_grants (
    job_id   uuid        NOT NULL,
    attempt  integer     NOT NULL,
    start_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
