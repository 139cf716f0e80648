#!/usr/bin/env bash
# README command 2: runs the whole test suite, starting the servers it needs first.
# Tests isolate themselves (a PostgreSQL schema or SQLite file per test) and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# This run's logs in a directory of its own (kept, and named, at the end).
PYSAAS_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pysaas-test.XXXXXX")
export PYSAAS_RUN_DIR
trap stop_started EXIT
ensure_postgres
ensure_rabbitmq
ensure_redis
ensure_openbao
ensure_dynamodb
ensure_promtool
ensure_cargo_deny
ensure_pytools
ensure_infratools
ensure_podman
ensure_browser
install_tansu
export PYSAAS_TEST_DATABASE_URL="${PYSAAS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export PYSAAS_TEST_AMQP_URL="${PYSAAS_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export PYSAAS_TEST_REDIS_URL="${PYSAAS_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
export PYSAAS_TEST_DYNAMODB_URL="${PYSAAS_TEST_DYNAMODB_URL:-http://127.0.0.1:4566}"
export PYSAAS_TEST_VAULT_ADDR="${PYSAAS_TEST_VAULT_ADDR:-http://127.0.0.1:8200}"
export PYSAAS_TEST_PROMTOOL="${PYSAAS_TEST_PROMTOOL:-$PROMTOOL}"
export PYSAAS_TEST_BROWSER="${PYSAAS_TEST_BROWSER:-$BROWSER_DIR}"
export PYSAAS_TEST_PYTOOLS="${PYSAAS_TEST_PYTOOLS:-$PYTOOLS_VENV/bin}"
export PYSAAS_TEST_INFRATOOLS="${PYSAAS_TEST_INFRATOOLS:-$INFRATOOLS_VENV/bin}"
# The event-stream tests start tansu brokers of their own (one each, in memory).
export PYSAAS_TEST_TANSU="${PYSAAS_TEST_TANSU:-$TANSU}"

log "checking dependencies (licences, bans, sources)"
cargo fetch --locked --quiet  # every platform's crates, so that the check itself runs offline
"$CARGO_DENY" deny --offline check licenses bans sources
log "building"
cargo build --locked --workspace --all-targets --all-features
scripts/build-ui.sh "$CARGO_TARGET_DIR/debug/pysaas"
log "checking the dashboard (ESLint, TypeScript strict, Prettier, Vitest)"
(cd frontend && npx eslint . && npx tsc --noEmit && npx prettier --check src && npx vitest run --silent) 2>&1 | tail -n 5
export PYSAAS_TEST_UI_DIR="${PYSAAS_TEST_UI_DIR:-$PWD/frontend/out}"
log "building the API docs (rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
log "running tests"
cargo test --locked --workspace --all-features --no-fail-fast "$@" 2>&1 | tee "$PYSAAS_RUN_DIR/test.log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$PYSAAS_RUN_DIR/test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$PYSAAS_RUN_DIR/test.log" | awk '{s+=$1} END {print s+0}')
echo "${passed} passed, ${failed} failed (log: $PYSAAS_RUN_DIR/test.log)"
exit "$status"
