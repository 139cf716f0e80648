-- Queues that workers consume, with when one last said so (unix microseconds).
CREATE TABLE queue_consumers (
    queue     TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL
);
