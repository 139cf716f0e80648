-- Paused queues (times in unix microseconds): workers claim nothing from a queue named here
-- until it is resumed.
CREATE TABLE queue_pauses (
    queue     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    paused_by TEXT    NOT NULL
);
