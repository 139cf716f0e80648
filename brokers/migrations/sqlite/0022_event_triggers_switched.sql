-- The recording triggers exist only while events are on (see the PostgreSQL migration of the
-- same name): the store creates and drops them (`sql/events.rs`), and creates them after
-- migrating when events are on. These, which read the flag on every row, go.
DROP TRIGGER event_outbox_submitted;
DROP TRIGGER event_outbox_moved;
DROP TRIGGER event_outbox_finished;
