-- A claim records no fact of its own (see the PostgreSQL migration of the same name): the store
-- makes the new moves trigger after migrating when events are on (`sql/events.rs`).
DROP TRIGGER IF EXISTS event_outbox_moved;
