-- Revenue recognised per UTC day, currency and paying tenant (docs/events.md), counted by the
-- analytics consumer from `pysaas.analytics.revenue_recognised`, each event once.
CREATE TABLE analytics_revenue (
    tenant_id    text        NOT NULL,
    day          timestamptz NOT NULL,
    currency     text        NOT NULL,
    invoices     bigint      NOT NULL,
    amount_minor bigint      NOT NULL,
    PRIMARY KEY (day, currency, tenant_id)
);
