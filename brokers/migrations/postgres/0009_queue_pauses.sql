-- Paused queues: workers claim nothing from a queue named here until it is resumed. Queues are
-- shared by every tenant, so a pause is the operator's; the row outlives restarts.
CREATE TABLE queue_pauses (
    queue     text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text        NOT NULL
);
