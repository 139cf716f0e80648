-- Per-minute rollups of finished attempts, per tenant and queue, flushed by the workers every
-- few seconds: counts, and how long attempts waited to start once due (w0..w15: a histogram
-- with bounds 1, 2, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10, 30, 60 s and above).
CREATE TABLE job_stats (
    tenant_id text NOT NULL,
    queue     text NOT NULL,
    minute    timestamptz NOT NULL,
    succeeded bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    w0 bigint NOT NULL DEFAULT 0,
    w1 bigint NOT NULL DEFAULT 0,
    w2 bigint NOT NULL DEFAULT 0,
    w3 bigint NOT NULL DEFAULT 0,
    w4 bigint NOT NULL DEFAULT 0,
    w5 bigint NOT NULL DEFAULT 0,
    w6 bigint NOT NULL DEFAULT 0,
    w7 bigint NOT NULL DEFAULT 0,
    w8 bigint NOT NULL DEFAULT 0,
    w9 bigint NOT NULL DEFAULT 0,
    w10 bigint NOT NULL DEFAULT 0,
    w11 bigint NOT NULL DEFAULT 0,
    w12 bigint NOT NULL DEFAULT 0,
    w13 bigint NOT NULL DEFAULT 0,
    w14 bigint NOT NULL DEFAULT 0,
    w15 bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, minute, queue)
);
-- The pruner deletes by age across tenants.
CREATE INDEX job_stats_minute ON job_stats (minute);
