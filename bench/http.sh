#!/usr/bin/env bash
# HTTP submissions through a separate `pysaas api` process, driven by wrk from another process,
# side by side with PostgreSQL's own one-commit-per-row rate (pgbench), in one run:
#   bench/http.sh pg        # API on PostgreSQL (fresh schema), then pgbench on the same server
#   bench/http.sh sqlite    # API on the embedded default (SQLite in a temporary directory)
# Env: PYSAAS_BIN (default: release build in $CARGO_TARGET_DIR), SECONDS_EACH (10),
# CONNECTIONS (64), BATCH_CONNECTIONS (4), DATABASE_URL, RUNS (1), EVENTS (`off`; `outbox`:
# every transition recorded in the event outbox; `kafka`: that, and a `pysaas scheduler` whose
# leader publishes it to KAFKA_BROKERS).
# Every job is a `system.noop` on queue `httpbench`, which no worker consumes: this measures
# submission (API-key auth, rate limiter with limits lifted, validation, durable insert, 202).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
mode=${1:-pg}
seconds=${SECONDS_EACH:-10}
conns=${CONNECTIONS:-64}
batch_conns=${BATCH_CONNECTIONS:-4}
runs=${RUNS:-1}
pg_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
bin=${PYSAAS_BIN:-$CARGO_TARGET_DIR/release/pysaas}
if [ ! -x "$bin" ]; then
  log "building the release binary"
  cargo build --release --locked --bin pysaas >&2
fi
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi

work=$(mktemp -d)
schema="httpbench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
api_pid="" scheduler_pid=""
cleanup() {
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  [ -n "$scheduler_pid" ] && kill "$scheduler_pid" 2>/dev/null && wait "$scheduler_pid" 2>/dev/null
  if [ "$mode" = pg ]; then
    psql "$pg_url" -qX -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/pysaas.toml" <<EOF
[api]
rate_limit_backend = "memory"
key_rate_limit = { rate = 1e9, burst = 1000000000 }
[rate_limits.free]
rate = 1e9
burst = 1000000000
EOF
export PYSAAS_CONFIG="$work/pysaas.toml" PYSAAS_LOG=error PYSAAS_DATA_DIR="$work"
if [ "$mode" = pg ]; then
  export PYSAAS_DATABASE_URL="$pg_url" PYSAAS_PG_SCHEMA="$schema"
else
  export PYSAAS_DATABASE_URL="sqlite://$work/pysaas.db"
fi
"$bin" migrate >/dev/null
case "${EVENTS:-off}" in
  off) ;;
  outbox) export PYSAAS_EVENTS_ENABLED=true ;;
  kafka)
    export PYSAAS_EVENTS_ENABLED=true PYSAAS_KAFKA_BROKERS="${KAFKA_BROKERS:?EVENTS=kafka needs KAFKA_BROKERS}" \
      PYSAAS_KAFKA_TOPIC_PREFIX="$schema."
    "$bin" scheduler >/dev/null 2>"$work/scheduler.log" &
    scheduler_pid=$!
    ;;
  *) echo "EVENTS must be off, outbox or kafka" >&2; exit 2 ;;
esac
key=$("$bin" admin create-key --name httpbench 2>/dev/null)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" api --listen "127.0.0.1:$port" >/dev/null 2>"$work/api.log" &
api_pid=$!
wait_for "pysaas api" curl -sf "http://127.0.0.1:$port/healthz"

cat >"$work/single.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind":"system.noop","queue":"httpbench"}'
EOF
python3 - "$work/batch.lua" "$key" <<'EOF'
import json, sys
body = json.dumps({"jobs": [{"kind": "system.noop", "queue": "httpbench"}] * 1000})
open(sys.argv[1], "w").write(
    'wrk.method = "POST"\n'
    f'wrk.headers["Authorization"] = "Bearer {sys.argv[2]}"\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
    f"wrk.body = '{body}'\n"
)
EOF

# Peak resident memory of the API process while wrk runs.
watch_rss() {
  local peak=0 rss
  while kill -0 "$api_pid" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$api_pid/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss
    echo "$peak" >"$work/rss"
    sleep 0.2
  done
}

# wrk's summary as "rate p50 p99 non2xx".
wrk_run() {
  local script=$1 c=$2
  wrk -t2 -c"$c" -d"${seconds}s" --latency -s "$script" "http://127.0.0.1:$port/v1/jobs${3:-}" >"$work/wrk.out" 2>&1
  python3 - "$work/wrk.out" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % label, t)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
print(f"{rate:.0f} {ms('50'):.2f} {ms('99'):.2f} {bad.group(1) if bad else 0}")
EOF
}

store_label=$([ "$mode" = pg ] && echo PostgreSQL || echo "SQLite (embedded default)")
for run in $(seq 1 "$runs"); do
  watch_rss & watcher=$!
  read -r rate p50 p99 bad < <(wrk_run "$work/single.lua" "$conns")
  kill "$watcher" 2>/dev/null || true
  rss=$(cat "$work/rss" 2>/dev/null || true)  # empty when the watcher had not written yet
  echo "http submit ($store_label, wrk -t2 -c$conns -d${seconds}s): $rate jobs/s, p50 $p50 ms, p99 $p99 ms, non-2xx $bad, api peak RSS $(( ${rss:-0} / 1024 )) MB"
  read -r brate bp50 bp99 bbad < <(wrk_run "$work/batch.lua" "$batch_conns" /batch)
  echo "http batch  ($store_label, 1,000 jobs per request, wrk -t2 -c$batch_conns): $(( ${brate%.*} * 1000 )) jobs/s, p50 $bp50 ms, p99 $bp99 ms, non-2xx $bbad"
  if [ "$mode" = pg ]; then
    psql "$pg_url" -qX -c "CREATE TABLE IF NOT EXISTS $schema.pgbench_jobs (id uuid PRIMARY KEY, tenant_id text, kind text, payload jsonb, created_at timestamptz)" >/dev/null
    echo "INSERT INTO $schema.pgbench_jobs VALUES (gen_random_uuid(), 'default', 'system.noop', '{}', now());" >"$work/insert.sql"
    tps=$(pgbench -n -c "$conns" -j 2 -T "$seconds" -f "$work/insert.sql" "$pg_url" 2>/dev/null \
      | awk '/^tps = / {print int($3)}')
    echo "pgbench (one INSERT + commit per transaction, -c$conns -j2 -T$seconds): $tps tps"
    awk -v a="$rate" -v b="$tps" 'BEGIN { printf "http submit / pgbench: %.2f\n", a / b }'
  fi
done
# Every accepted job is in the store.
if [ "$mode" = pg ]; then
  stored=$(psql "$pg_url" -qXtA -c "SELECT count(*) FROM $schema.jobs")
else
  stored=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from jobs').fetchone()[0])" "$work/pysaas.db")
fi
echo "jobs in the store afterwards: $stored"
