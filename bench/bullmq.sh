#!/usr/bin/env bash
# Measures BullMQ 6's drain of N no-op jobs (one Worker, concurrency 50 and 200) on the local
# Redis, under a throw-away key prefix, for the side-by-side table in docs/benchmarks.md.
#   bench/bullmq.sh                      # N=20000, CONCURRENCIES="50 200"
#   N=5000 CONCURRENCIES="50" bench/bullmq.sh
# npm packages are installed on first run into $PYSAAS_BENCH_NODE (outside the repository).
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
ensure_npm bullmq 6 ioredis
# Each run uses the key prefix "<base>-c<concurrency>" and deletes its keys; this deletes
# whatever is left of them if the script fails or is interrupted.
export BULLMQ_PREFIX_BASE="bullmq-bench-$(random_suffix)"
cleanup() {
  redis-cli -u "$REDIS_URL" --scan --pattern "$BULLMQ_PREFIX_BASE-*" \
    | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
node bullmq_drain.mjs
