-- Revenue recognised per UTC day (see the PostgreSQL migration of the same name).
CREATE TABLE analytics_revenue (
    tenant_id    TEXT    NOT NULL,
    day          INTEGER NOT NULL,
    currency     TEXT    NOT NULL,
    invoices     INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    PRIMARY KEY (day, currency, tenant_id)
) STRICT;
