-- Billing (docs/domains.md, "Billing"): plans the operator sells, tenants' subscriptions to
-- them, invoices numbered without gaps per tenant, and one payment row per charge attempt.
-- Amounts are integer minor units of the row's ISO 4217 currency.
CREATE TABLE billing_plans (
    id             text COLLATE "C" PRIMARY KEY,
    name           text        NOT NULL,
    amount_minor   bigint      NOT NULL CHECK (amount_minor >= 0),
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    period_unit    text        NOT NULL CHECK (period_unit IN ('day', 'week', 'month', 'year')),
    period_count   integer     NOT NULL CHECK (period_count BETWEEN 1 AND 36),
    trial_days     integer     NOT NULL CHECK (trial_days BETWEEN 0 AND 730),
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL
);

CREATE TABLE billing_subscriptions (
    id                   uuid PRIMARY KEY,
    tenant_id            text        NOT NULL,
    plan_id              text        NOT NULL REFERENCES billing_plans (id),
    status               text        NOT NULL
        CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled')),
    payment_method       text        NOT NULL,
    -- Periods count from the anchor (period n ends at anchor + (n + 1) intervals).
    anchor               timestamptz NOT NULL,
    period               integer     NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    trial_end            timestamptz,
    cancel_at_period_end boolean     NOT NULL DEFAULT false,
    -- Owed to the tenant (a downgrade's proration), taken off the next invoice.
    credit_minor         bigint      NOT NULL DEFAULT 0 CHECK (credit_minor >= 0),
    cancelled_at         timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
-- One live subscription per tenant.
CREATE UNIQUE INDEX billing_subscriptions_live ON billing_subscriptions (tenant_id)
    WHERE status <> 'cancelled';
-- What the invoice run looks for.
CREATE INDEX billing_subscriptions_due ON billing_subscriptions (current_period_end)
    WHERE status <> 'cancelled';

CREATE TABLE billing_invoice_counters (
    tenant_id   text PRIMARY KEY,
    last_number bigint NOT NULL
);

CREATE TABLE billing_invoices (
    id              uuid PRIMARY KEY,
    tenant_id       text        NOT NULL,
    number          bigint      NOT NULL,
    subscription_id uuid        NOT NULL REFERENCES billing_subscriptions (id),
    reason          text        NOT NULL CHECK (reason IN ('cycle', 'plan_change')),
    status          text        NOT NULL
        CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency        text        NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    subtotal_minor  bigint      NOT NULL,
    total_minor     bigint      NOT NULL CHECK (total_minor >= 0),
    attempt_count   integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    UNIQUE (tenant_id, number)
);
-- Exactly one invoice per subscription and period, however many invoice runs race.
CREATE UNIQUE INDEX billing_invoices_cycle ON billing_invoices (subscription_id, period_start)
    WHERE reason = 'cycle';
CREATE INDEX billing_invoices_tenant ON billing_invoices (tenant_id, number DESC);

CREATE TABLE billing_invoice_lines (
    invoice_id   uuid        NOT NULL REFERENCES billing_invoices (id),
    line_no      integer     NOT NULL,
    description  text        NOT NULL,
    amount_minor bigint      NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

CREATE TABLE billing_payments (
    id              uuid PRIMARY KEY,
    invoice_id      uuid        NOT NULL REFERENCES billing_invoices (id),
    tenant_id       text        NOT NULL,
    attempt         integer     NOT NULL,
    amount_minor    bigint      NOT NULL,
    currency        text        NOT NULL,
    -- pending: sent (or about to be) and not yet answered; the retry of a pending attempt
    -- reuses its idempotency key, so the provider answers it without charging again.
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider        text        NOT NULL,
    idempotency_key text        NOT NULL UNIQUE,
    provider_ref    text,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    UNIQUE (invoice_id, attempt)
);
-- At most one attempt in flight per invoice.
CREATE UNIQUE INDEX billing_payments_pending ON billing_payments (invoice_id)
    WHERE status = 'pending';
