-- Worker processes as their heartbeats last reported them (times in unix microseconds).
CREATE TABLE workers (
    id          TEXT    PRIMARY KEY,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    version     TEXT    NOT NULL,
    queues      TEXT    NOT NULL,
    concurrency INTEGER NOT NULL,
    busy        INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
