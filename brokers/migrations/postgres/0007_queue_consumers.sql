-- Queues that workers consume, with when one last said so (workers refresh theirs every few
-- seconds), so that the API can say when a job goes to a queue nobody has ever consumed.
CREATE TABLE queue_consumers (
    queue     text COLLATE "C" PRIMARY KEY,
    last_seen timestamptz NOT NULL
);
