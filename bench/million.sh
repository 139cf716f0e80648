#!/usr/bin/env bash
# One tenant with 1,000,000 jobs (900,000 finished in the history, 100,000 unfinished: queued,
# scheduled, running; three queues, four kinds, payloads with a user_id) and a day of per-minute
# statistics, seeded with SQL into a schema of its own; then the dashboard's requests against
# `pysaas api` on it, each timed with curl 7 times (median and max, milliseconds).
#   bench/million.sh            # PYSAAS_BIN (release build by default), DATABASE_URL
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
bin=${PYSAAS_BIN:-$CARGO_TARGET_DIR/release/pysaas}
schema=bench_million
port=18181
export PYSAAS_DATABASE_URL=$pg PYSAAS_PG_SCHEMA=$schema PYSAAS_LOG=warn
psql "$pg" -qc "DROP SCHEMA IF EXISTS $schema CASCADE"
"$bin" migrate >/dev/null
log "seeding 1,000,000 jobs"
psql "$pg" -q <<SQL
SET search_path = $schema;
INSERT INTO tenants (id, name, plan, created_at) VALUES ('default', 'default', 'free', now())
  ON CONFLICT DO NOTHING;
-- Finished: 900,000 over the last day, newest last (ids in time order, as uuid v7 would be).
INSERT INTO job_history (id, tenant_id, kind, queue, state, priority, attempts, max_attempts,
                         payload, timeout_ms, worker_id, created_at, run_at, started_at, finished_at)
SELECT (lpad(to_hex(i), 12, '0') || '7000' || '8000' || lpad(to_hex(i), 12, '0'))::uuid,
       'default',
       (ARRAY['notification.webhook', 'system.sleep', 'system.noop', 'system.fail'])[1 + i % 4],
       (ARRAY['default', 'billing', 'notifications'])[1 + i % 3],
       CASE WHEN i % 50 = 0 THEN 'dead' WHEN i % 97 = 0 THEN 'cancelled' ELSE 'succeeded' END,
       0, 1, 25, jsonb_build_object('user_id', i % 5000, 'ms', 10), 60000, 'bench',
       now() - interval '1 day' + i * interval '96 ms', now() - interval '1 day' + i * interval '96 ms',
       now() - interval '1 day' + i * interval '96 ms', now() - interval '1 day' + i * interval '96 ms'
FROM generate_series(1, 900000) AS i;
-- Unfinished: 100,000 newer ones.
INSERT INTO jobs (id, tenant_id, kind, queue, state, priority, attempts, max_attempts, payload,
                  timeout_ms, created_at, run_at, started_at, worker_id, lease_expires_at)
SELECT (lpad(to_hex(i), 12, '0') || '7000' || '8000' || lpad(to_hex(i), 12, '0'))::uuid,
       'default',
       (ARRAY['notification.webhook', 'system.sleep', 'system.noop', 'system.fail'])[1 + i % 4],
       (ARRAY['default', 'billing', 'notifications'])[1 + i % 3],
       CASE WHEN i % 10 = 0 THEN 'scheduled' WHEN i % 10 = 1 THEN 'running' ELSE 'queued' END,
       0, CASE WHEN i % 10 = 1 THEN 1 ELSE 0 END, 25, jsonb_build_object('user_id', i % 5000, 'ms', 10),
       60000, now(), CASE WHEN i % 10 = 0 THEN now() + interval '1 hour' ELSE now() END,
       CASE WHEN i % 10 = 1 THEN now() END, CASE WHEN i % 10 = 1 THEN 'bench' END,
       CASE WHEN i % 10 = 1 THEN now() + interval '1 hour' END
FROM generate_series(900001, 1000000) AS i;
-- A day of statistics: every minute, three queues.
INSERT INTO job_stats (tenant_id, queue, minute, succeeded, failed, w3)
SELECT 'default', q, date_trunc('minute', now()) - m * interval '1 minute', 600, 12, 612
FROM generate_series(0, 1439) AS m, unnest(ARRAY['default', 'billing', 'notifications']) AS q;
-- As autovacuum leaves an insert-only table: statistics and visibility map up to date.
VACUUM ANALYZE;
SQL
key=$("$bin" admin create-key --tenant default --name bench 2>/dev/null | grep -Eo 'pk_[A-Za-z0-9_-]+' | head -n1)
PYSAAS_LISTEN=127.0.0.1:$port "$bin" api >/dev/null 2>&1 &
api=$!
trap 'kill $api 2>/dev/null; [ -n "${KEEP:-}" ] || psql "$pg" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
oldest=$(psql "$pg" -Atc "SELECT id FROM $schema.job_history ORDER BY id LIMIT 1 OFFSET 500000")
time_of() { # PATH: median and max of 7 requests after a first one (shown apart: it warms caches)
  local path=$1 times=() code first
  read -r code first < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
    -H "Authorization: Bearer $key" "http://127.0.0.1:$port$path")
  [ "$code" = 200 ] || { echo "  $path: HTTP $code" >&2; return 1; }
  for _ in $(seq 7); do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $key" "http://127.0.0.1:$port$path")")
  done
  python3 - "$path" "$first" "${times[@]}" <<'PY'
import statistics, sys
first = float(sys.argv[2]) * 1000
ms = sorted(float(t) * 1000 for t in sys.argv[3:])
print(f"  {sys.argv[1]:<62} median {statistics.median(ms):6.1f} ms  max {ms[-1]:6.1f} ms"
      f"  first {first:6.1f} ms")
PY
}
log "timing the dashboard's requests (1,000,000 jobs)"
for path in "/v1/jobs?limit=50" "/v1/jobs?limit=50&state=queued" "/v1/jobs?limit=50&state=succeeded" \
  "/v1/jobs?limit=50&state=dead" "/v1/jobs?limit=50&kind=system.fail" "/v1/jobs?limit=50&queue=billing" \
  "/v1/jobs?limit=50&state=dead&queue=billing&kind=system.noop" "/v1/jobs?limit=50&cursor=$oldest" \
  '/v1/jobs?limit=50&payload=%7B%22user_id%22%3A42%7D' '/v1/jobs?limit=50&payload=%7B%22user_id%22%3A-1%7D' \
  '/v1/jobs?limit=50&payload=%7B%22ms%22%3A10%7D' '/v1/jobs?limit=50&payload=%7B%22user_id%22%3A42%7D' "/v1/queues" "/v1/stats" "/v1/stats?window=day" \
  "/v1/jobs/$oldest"; do
  time_of "$path"
done
