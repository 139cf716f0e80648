-- A tenant's email sender (see the PostgreSQL migration 0017).
CREATE TABLE email_senders (
    tenant_id    TEXT    PRIMARY KEY NOT NULL,
    from_address TEXT    NOT NULL,
    from_name    TEXT,
    reply_to     TEXT,
    updated_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
