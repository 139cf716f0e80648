#!/usr/bin/env bash
# What recording job transitions costs PostgreSQL itself, without PySaaS's processes: the drain's
# two statements (claim 500 queued jobs; move them to the history as succeeded), 20,000 jobs, in
# schemas migrated as PySaaS migrates them, round by round:
#   off      — events off (no recording triggers);
#   on       — events on, as the store records them (since migration 0025 the claim records
#              nothing: the finish's fact carries the attempt's start).
#   bench/outbox-sql.sh
# Commits do not wait for the WAL flush (`synchronous_commit = off` in the draining session), so
# the figures are the statements' own work. Env: ROUNDS (3), DATABASE_URL, BATCH (500). Prints
# each run's seconds and the medians.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
rounds=${ROUNDS:-3}
batch=${BATCH:-500}
q() { psql -qAtX -v ON_ERROR_STOP=1 "$pg" "$@"; }
procedures="
CREATE PROCEDURE fill(n int) LANGUAGE sql AS \$\$
  INSERT INTO jobs (id, tenant_id, kind, queue, state, attempts, max_attempts, payload, timeout_ms, run_at)
  SELECT gen_random_uuid(), 'default', 'system.noop', 'q', 'queued', 0, 3, '{}', 30000, now()
  FROM generate_series(1, n) \$\$;
CREATE PROCEDURE drain(n int, b int, OUT secs float8) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp(); k int := 0;
BEGIN
  WHILE k < n LOOP
    WITH next AS (SELECT id FROM jobs WHERE state = 'queued' AND queue = 'q'
                  ORDER BY priority DESC, run_at, id LIMIT b FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = now(),
           worker_id = 'w', lease_expires_at = now() + interval '30 s'
    WHERE id = ANY(ARRAY(SELECT id FROM next));
    COMMIT;
    WITH moved AS (DELETE FROM jobs WHERE state = 'running' RETURNING *)
    INSERT INTO job_history (id, tenant_id, kind, queue, state, priority, attempts, max_attempts,
                             payload, timeout_ms, trace_context, request_id, worker_id, created_at,
                             run_at, started_at, finished_at)
    SELECT id, tenant_id, kind, queue, 'succeeded', priority, attempts, max_attempts, payload,
           timeout_ms, trace_context, request_id, worker_id, created_at, run_at, started_at, now()
    FROM moved;
    COMMIT;
    k := k + b;
  END LOOP;
  secs := extract(epoch FROM clock_timestamp() - t0);
END \$\$;"
variants=(off on)
declare -A schema
for v in "${variants[@]}"; do
  s="outboxsql_${v//-/_}_$$"
  schema[$v]=$s
  q -c "CREATE SCHEMA $s" >/dev/null
  for f in brokers/migrations/postgres/*.sql; do
    { echo "SET search_path = $s;"; cat "$f"; } | q >/dev/null 2>&1
  done
  { echo "SET search_path = $s;"; echo "$procedures"; } | q >/dev/null
  case $v in
    on) q -c "SET search_path = $s; SELECT event_outbox_switch(true)" >/dev/null ;;
  esac
done
trap 'for v in "${variants[@]}"; do q -c "DROP SCHEMA IF EXISTS ${schema[$v]} CASCADE" >/dev/null 2>&1; done' EXIT
declare -A runs
for _ in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    s=${schema[$v]}
    q -c "SET search_path = $s; TRUNCATE jobs, job_history, event_outbox, history_counts; CALL fill(20000)" >/dev/null
    q -c CHECKPOINT >/dev/null
    # Its own statement, not a multi-statement -c (that is one transaction: no COMMIT inside).
    # Commits do not wait for the disk (this VM's flush latency swamps the statements' work).
    secs=$(printf 'SET search_path = %s;\nSET synchronous_commit = off;\nCALL drain(20000, %s, NULL);\n' "$s" "$batch" | q)
    runs[$v]="${runs[$v]:-} $secs"
  done
done
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086 # the runs are words on purpose
  printf '%-9s %s  median %s s\n' "$v" "${runs[$v]}" "$(printf '%s\n' ${runs[$v]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
