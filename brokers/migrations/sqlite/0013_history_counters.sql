-- The queue list's counts of finished jobs by tenant, queue and state, kept by triggers on the
-- history instead of counted from it (see the PostgreSQL migration of the same number). SQLite
-- has one writer at a time, so each change updates its group's one row in place.
CREATE TABLE history_counts (
    tenant_id TEXT    NOT NULL,
    queue     TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, queue, state)
) STRICT, WITHOUT ROWID;

INSERT INTO history_counts (tenant_id, queue, state, n)
    SELECT tenant_id, queue, state, count(*) FROM job_history
    GROUP BY tenant_id, queue, state;

CREATE TRIGGER history_counts_insert AFTER INSERT ON job_history BEGIN
    INSERT INTO history_counts (tenant_id, queue, state, n)
        VALUES (NEW.tenant_id, NEW.queue, NEW.state, 1)
        ON CONFLICT (tenant_id, queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER history_counts_delete AFTER DELETE ON job_history BEGIN
    UPDATE history_counts SET n = n - 1
        WHERE tenant_id = OLD.tenant_id AND queue = OLD.queue AND state = OLD.state;
END;

CREATE TRIGGER history_counts_update
    AFTER UPDATE OF tenant_id, queue, state ON job_history BEGIN
    UPDATE history_counts SET n = n - 1
        WHERE tenant_id = OLD.tenant_id AND queue = OLD.queue AND state = OLD.state;
    INSERT INTO history_counts (tenant_id, queue, state, n)
        VALUES (NEW.tenant_id, NEW.queue, NEW.state, 1)
        ON CONFLICT (tenant_id, queue, state) DO UPDATE SET n = n + 1;
END;

-- Nothing else read this index: one index fewer for every finished job to enter.
DROP INDEX job_history_counts;
