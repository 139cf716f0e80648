-- The address a tenant's email goes out from, and where replies go (docs/domains.md,
-- "Notifications"). A tenant without a row sends from the deployment's default sender.
CREATE TABLE email_senders (
    tenant_id    text PRIMARY KEY,
    from_address text        NOT NULL,
    from_name    text,
    reply_to     text,
    updated_at   timestamptz NOT NULL
);
