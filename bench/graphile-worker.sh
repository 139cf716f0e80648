#!/usr/bin/env bash
# Measures graphile-worker 0.18's drain of N no-op jobs (one worker, concurrency 24, localQueue
# 500, completeJobBatchDelay 0) on the local PostgreSQL, in throw-away schemas, for the
# side-by-side table in docs/benchmarks.md.
#   bench/graphile-worker.sh             # N=20000, CONCURRENCY=24, LOCAL_QUEUE=500, RUNS=1
#   N=5000 RUNS=3 bench/graphile-worker.sh
# npm packages are installed on first run into $PYSAAS_BENCH_NODE (outside the repository).
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
ensure_npm graphile-worker 0.18 pg
# Each run migrates a fresh schema "<base>_<run>" and drops it; this drops whatever is left of
# them if the script fails or is interrupted.
export GW_SCHEMA_BASE="gw_bench_$(random_suffix)"
cleanup() {
  psql "$DATABASE_URL" -qX -v ON_ERROR_STOP=1 -v base="$GW_SCHEMA_BASE" >/dev/null <<'SQL' || true
SET client_min_messages = warning;
SELECT set_config('gw_bench.base', :'base', false);
DO $$
DECLARE s text;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE starts_with(nspname, current_setting('gw_bench.base') || '_') LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $$;
SQL
}
trap cleanup EXIT
trap 'exit 130' INT TERM
node graphile_drain.mjs
