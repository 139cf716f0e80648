#!/usr/bin/env bash
# Measures apalis 1.0's PostgreSQL backend draining N no-op jobs (concurrency 64) on the local
# PostgreSQL, in a throw-away database, for docs/decisions.md and docs/benchmarks.md.
#   bench/apalis.sh          # N=20000
set -euo pipefail
cd "$(dirname "$0")/apalis-drain"
db="apalis_bench_$$"
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $db"
trap 'psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
CARGO_TARGET_DIR="${APALIS_TARGET_DIR:-$HOME/.cache/pysaas/apalis-target}" \
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" cargo run --release -q
