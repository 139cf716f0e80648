-- Cron schedules. `fired_through`: every tick up to it was handled; `version` is bumped by every
-- definition change, and a tick is recorded only against the version it was evaluated with.
CREATE TABLE schedules (
    tenant_id     text        NOT NULL,
    name          text        NOT NULL,
    cron          text        NOT NULL,
    timezone      text        NOT NULL,
    kind          text        NOT NULL,
    payload       jsonb       NOT NULL,
    queue         text,
    priority      smallint,
    max_attempts  integer,
    misfire       text        NOT NULL CHECK (misfire IN ('skip', 'fire_once', 'catch_up')),
    catch_up_max  integer     NOT NULL,
    paused        boolean     NOT NULL DEFAULT false,
    source        text        NOT NULL CHECK (source IN ('config', 'api')),
    fired_through timestamptz NOT NULL,
    next_fire_at  timestamptz,
    last_fire_at  timestamptz,
    last_job_id   uuid,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;

-- Leader leases: one row per elected role. `token` grows with every change of holder and fences
-- the holder's writes.
CREATE TABLE leases (
    name        text        PRIMARY KEY,
    holder      text        NOT NULL,
    token       bigint      NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
