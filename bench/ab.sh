#!/usr/bin/env bash
# Two PySaaS builds against each other on one machine, alternately round by round (a checkpoint
# before each run), per transport: each run's drain rate, the medians and after/before.
#   bench/ab.sh BEFORE_BIN AFTER_BIN store redis://127.0.0.1:6379/0 amqp://guest:guest@127.0.0.1:5672/%2f
# Env: ROUNDS (5), N (20000), CONCURRENCY (64), DATABASE_URL, BENCH_ARGS (more `pysaas bench`
# arguments for both, e.g. `--payload {"user_id":42}`). Prints the drain rate, then the enqueue
# rate (batches of 1,000) of the same runs. Build the "before" binary from a
# worktree (`git worktree add /tmp/before REV`, `cargo build --release`) and copy it aside.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
before=$1 after=$2
shift 2
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
rounds=${ROUNDS:-5}
# "drain run 1: D jobs/s (N jobs; enqueue in batches of 1,000: E jobs/s)" -> "D E"
rates() { grep -E '^drain run 1' | grep -Eo '[0-9]+ jobs/s' | grep -Eo '^[0-9]+' | paste -sd' '; }
drain() { # BIN BROKER
  psql "$pg" -qc CHECKPOINT
  # shellcheck disable=SC2086 # BENCH_ARGS is split into arguments on purpose
  "$1" bench --database-url "$pg" --broker "$2" --phases drain --jobs "${N:-20000}" \
    --concurrency "${CONCURRENCY:-64}" ${BENCH_ARGS:-} | rates
}
for broker in "$@"; do
  ad=() ae=() bd=() be=()
  for _ in $(seq "$rounds"); do
    read -r d e < <(drain "$before" "$broker")
    ad+=("$d") ae+=("$e")
    read -r d e < <(drain "$after" "$broker")
    bd+=("$d") be+=("$e")
  done
  report_medians "$broker" before after "${ad[@]}" -- "${bd[@]}"
  report_medians "$broker enqueue" before after "${ae[@]}" -- "${be[@]}"
done
