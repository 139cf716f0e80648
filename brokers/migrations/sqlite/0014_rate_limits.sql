-- Execution rate limits shared by every worker process (see the PostgreSQL migration 0015).
CREATE TABLE rate_limits (
    key TEXT    PRIMARY KEY NOT NULL,
    tat INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE rate_grants (
    job_id   TEXT    NOT NULL,
    attempt  INTEGER NOT NULL,
    start_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt)
) STRICT, WITHOUT ROWID;
