-- Per-minute rollups of finished attempts, per tenant and queue, flushed by the workers every
-- few seconds: counts, and how long attempts waited to start once due (w0..w15: a histogram
-- with bounds 1, 2, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10, 30, 60 s and above).
CREATE TABLE job_stats (
    tenant_id TEXT NOT NULL,
    queue     TEXT NOT NULL,
    minute    INTEGER NOT NULL,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    w0 INTEGER NOT NULL DEFAULT 0,
    w1 INTEGER NOT NULL DEFAULT 0,
    w2 INTEGER NOT NULL DEFAULT 0,
    w3 INTEGER NOT NULL DEFAULT 0,
    w4 INTEGER NOT NULL DEFAULT 0,
    w5 INTEGER NOT NULL DEFAULT 0,
    w6 INTEGER NOT NULL DEFAULT 0,
    w7 INTEGER NOT NULL DEFAULT 0,
    w8 INTEGER NOT NULL DEFAULT 0,
    w9 INTEGER NOT NULL DEFAULT 0,
    w10 INTEGER NOT NULL DEFAULT 0,
    w11 INTEGER NOT NULL DEFAULT 0,
    w12 INTEGER NOT NULL DEFAULT 0,
    w13 INTEGER NOT NULL DEFAULT 0,
    w14 INTEGER NOT NULL DEFAULT 0,
    w15 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, minute, queue)
);
-- The pruner deletes by age across tenants.
CREATE INDEX job_stats_minute ON job_stats (minute);
