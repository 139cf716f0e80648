-- Worker processes as their heartbeats last reported them (the dashboard's workers page).
CREATE TABLE workers (
    id          text        PRIMARY KEY,
    host        text        NOT NULL,
    pid         bigint      NOT NULL,
    version     text        NOT NULL,
    queues      text        NOT NULL,  -- space-separated
    concurrency integer     NOT NULL,
    busy        integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
