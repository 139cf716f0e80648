-- Billing (see the PostgreSQL migration 0016): ids as text, times as integer microseconds.
CREATE TABLE billing_plans (
    id             TEXT    PRIMARY KEY NOT NULL,
    name           TEXT    NOT NULL,
    amount_minor   INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency       TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    period_unit    TEXT    NOT NULL CHECK (period_unit IN ('day', 'week', 'month', 'year')),
    period_count   INTEGER NOT NULL CHECK (period_count BETWEEN 1 AND 36),
    trial_days     INTEGER NOT NULL CHECK (trial_days BETWEEN 0 AND 730),
    active         INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE billing_subscriptions (
    id                   TEXT    PRIMARY KEY NOT NULL,
    tenant_id            TEXT    NOT NULL,
    plan_id              TEXT    NOT NULL REFERENCES billing_plans (id),
    status               TEXT    NOT NULL
        CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled')),
    payment_method       TEXT    NOT NULL,
    anchor               INTEGER NOT NULL,
    period               INTEGER NOT NULL,
    current_period_start INTEGER NOT NULL,
    current_period_end   INTEGER NOT NULL,
    trial_end            INTEGER,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    credit_minor         INTEGER NOT NULL DEFAULT 0 CHECK (credit_minor >= 0),
    cancelled_at         INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX billing_subscriptions_live ON billing_subscriptions (tenant_id)
    WHERE status <> 'cancelled';
CREATE INDEX billing_subscriptions_due ON billing_subscriptions (current_period_end)
    WHERE status <> 'cancelled';

CREATE TABLE billing_invoice_counters (
    tenant_id   TEXT    PRIMARY KEY NOT NULL,
    last_number INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE billing_invoices (
    id              TEXT    PRIMARY KEY NOT NULL,
    tenant_id       TEXT    NOT NULL,
    number          INTEGER NOT NULL,
    subscription_id TEXT    NOT NULL REFERENCES billing_subscriptions (id),
    reason          TEXT    NOT NULL CHECK (reason IN ('cycle', 'plan_change')),
    status          TEXT    NOT NULL
        CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency        TEXT    NOT NULL,
    period_start    INTEGER NOT NULL,
    period_end      INTEGER NOT NULL,
    subtotal_minor  INTEGER NOT NULL,
    total_minor     INTEGER NOT NULL CHECK (total_minor >= 0),
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL,
    paid_at         INTEGER,
    UNIQUE (tenant_id, number)
) STRICT;
CREATE UNIQUE INDEX billing_invoices_cycle ON billing_invoices (subscription_id, period_start)
    WHERE reason = 'cycle';
CREATE INDEX billing_invoices_tenant ON billing_invoices (tenant_id, number DESC);

CREATE TABLE billing_invoice_lines (
    invoice_id   TEXT    NOT NULL REFERENCES billing_invoices (id),
    line_no      INTEGER NOT NULL,
    description  TEXT    NOT NULL,
    amount_minor INTEGER NOT NULL,
    period_start INTEGER NOT NULL,
    period_end   INTEGER NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
) STRICT, WITHOUT ROWID;

CREATE TABLE billing_payments (
    id              TEXT    PRIMARY KEY NOT NULL,
    invoice_id      TEXT    NOT NULL REFERENCES billing_invoices (id),
    tenant_id       TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    amount_minor    INTEGER NOT NULL,
    currency        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider        TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    provider_ref    TEXT,
    error_code      TEXT,
    error_message   TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (invoice_id, attempt)
) STRICT;
CREATE UNIQUE INDEX billing_payments_pending ON billing_payments (invoice_id)
    WHERE status = 'pending';
