#!/usr/bin/env bash
# What the audit and analytics streams cost, side by side in one run: the same binary, round by
# round, with events off and on (every transition recorded in the outbox and published to Kafka
# by the leader), for the drain (`pysaas bench`, PostgreSQL, store-native transport) and for HTTP
# submissions (bench/http.sh). Prints each run, the medians and on/off.
#   bench/events.sh
# Env: ROUNDS (5), N (20000), CONCURRENCY (64), DATABASE_URL, PYSAAS_BIN, KAFKA_BROKERS (default:
# a tansu started here on 127.0.0.1:9092), SECONDS_EACH (10, HTTP runs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
. scripts/lib.sh
trap stop_started EXIT
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
rounds=${ROUNDS:-5}
bin=${PYSAAS_BIN:-$CARGO_TARGET_DIR/release/pysaas}
if [ ! -x "$bin" ]; then
  log "building the release binary"
  cargo build --release --locked --bin pysaas >&2
fi
if [ -z "${KAFKA_BROKERS:-}" ]; then
  ensure_kafka
  KAFKA_BROKERS=127.0.0.1:9092
fi
drain() { # extra `pysaas bench` arguments
  psql "$pg" -qc CHECKPOINT
  "$bin" bench --database-url "$pg" --broker store --phases drain --jobs "${N:-20000}" \
    --concurrency "${CONCURRENCY:-64}" "$@" | grep -E '^drain run 1' | grep -Eo '^[^:]*: [0-9]+' | grep -Eo '[0-9]+$'
}
http() { # EVENTS value
  EVENTS=$1 KAFKA_BROKERS=$KAFKA_BROKERS PYSAAS_BIN=$bin bench/http.sh pg \
    | grep -E '^http submit \(' | grep -Eo '[0-9]+ jobs/s' | grep -Eo '^[0-9]+'
}
d_off=() d_on=() h_off=() h_on=()
for _ in $(seq "$rounds"); do
  d_off+=("$(drain)")
  d_on+=("$(drain --events --kafka-brokers "$KAFKA_BROKERS")")
  h_off+=("$(http off)")
  h_on+=("$(http kafka)")
done
report_medians "drain (PostgreSQL, store transport, ${N:-20000} jobs)" off on "${d_off[@]}" -- "${d_on[@]}"
report_medians "http submit (PostgreSQL)" off on "${h_off[@]}" -- "${h_on[@]}"
