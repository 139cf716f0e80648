-- Kind, queue and state go together: a kind has its queue, and some kinds fail more than others.
-- Planned as if they were independent, a filter on all three (the dashboard's dead jobs of one
-- kind in one queue) was estimated at 49 of the 3,000 rows it matched among 1,000,000 jobs, and
-- the planner read every dead job's page and sorted them (154 ms) instead of walking the
-- tenant's failures newest first until it had a page (0.6 ms). Statistics on the three
-- together (functional dependencies and their most common combinations) give it the real
-- figure; ANALYZE, run by autovacuum, keeps them.
CREATE STATISTICS job_history_kind_queue_state (dependencies, mcv)
    ON kind, queue, state FROM job_history;
CREATE STATISTICS jobs_kind_queue_state (dependencies, mcv)
    ON kind, queue, state FROM jobs;
