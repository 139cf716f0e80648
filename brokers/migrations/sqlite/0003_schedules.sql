-- Cron schedules (see the PostgreSQL migration). Times are integer microseconds.
CREATE TABLE schedules (
    tenant_id     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    queue         TEXT,
    priority      INTEGER,
    max_attempts  INTEGER,
    misfire       TEXT    NOT NULL CHECK (misfire IN ('skip', 'fire_once', 'catch_up')),
    catch_up_max  INTEGER NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    source        TEXT    NOT NULL CHECK (source IN ('config', 'api')),
    fired_through INTEGER NOT NULL,
    next_fire_at  INTEGER,
    last_fire_at  INTEGER,
    last_job_id   TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, name)
) STRICT;
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;

CREATE TABLE leases (
    name        TEXT    PRIMARY KEY NOT NULL,
    holder      TEXT    NOT NULL,
    token       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
