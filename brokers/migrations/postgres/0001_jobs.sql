-- The job table: the source of truth for every job's state.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    tenant_id        text        NOT NULL,
    kind             text        NOT NULL,
    queue            text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('scheduled','queued','running','succeeded','retrying','dead','cancelled')),
    priority         smallint    NOT NULL DEFAULT 0,
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    payload          jsonb       NOT NULL,
    result           jsonb,
    last_error       text,
    timeout_ms       bigint      NOT NULL,
    idempotency_key  text,
    trace_context    text,
    worker_id        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    run_at           timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_expires_at timestamptz
);

-- Claim order per queue; only queued rows, so the index stays small.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
-- Promotion of due scheduled/retrying rows.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('scheduled', 'retrying');
-- Rescue of expired leases.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
-- Listing newest first per tenant, and by state.
CREATE INDEX jobs_tenant_id ON jobs (tenant_id, id DESC);
CREATE INDEX jobs_tenant_state ON jobs (tenant_id, state, id DESC);
-- Retention pruning of finished rows.
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;
-- The same idempotency key yields the same job, per tenant.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
