#!/usr/bin/env bash
# Side-by-side runs of PySaaS and its peers on the same servers, interleaved round by round so
# that both see the same machine, with each run's figure, the medians and their ratio:
#   bench/compare.sh pg       # store drain vs graphile-worker 0.18 (local queue, batched completions)
#   bench/compare.sh redis    # Redis drain (state in PostgreSQL) vs BullMQ 6 (best of concurrency 50/200)
#   bench/compare.sh amqp     # RabbitMQ drain vs raw lapin and vs Celery 5 (acks_late, best pool)
#   bench/compare.sh all
# Env: ROUNDS (3), N (20000), CONCURRENCY (64, PySaaS), PYSAAS_BIN (release build by default),
# DATABASE_URL, REDIS_URL, AMQP_URL. Peers' own warnings go to $TMPDIR/pysaas-bench-*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds=${ROUNDS:-3}
n=${N:-20000}
conc=${CONCURRENCY:-64}
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
redis=${REDIS_URL:-redis://127.0.0.1:6379/0}
amqp=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
bin=${PYSAAS_BIN:-$CARGO_TARGET_DIR/release/pysaas}
if [ ! -x "$bin" ]; then
  log "building the release binary"
  cargo build --release --locked --bin pysaas >&2
fi

# The number before "jobs/s" (or "tasks/s") on the line matching $1 of stdin.
rate_of() { grep -E "$1" | head -n1 | grep -Eo '[0-9]+ (jobs|tasks)/s' | head -n1 | grep -Eo '^[0-9]+'; }

# summary NAME_A NAME_B A... -- B...: each round's pair, medians, ratio of the medians.
summary() {
  python3 - "$@" <<'PY'
import statistics, sys
args = sys.argv[1:]
a_name, b_name = args[0], args[1]
sep = args.index("--")
a = [float(x) for x in args[2:sep]]
b = [float(x) for x in args[sep + 1:]]
for i, (x, y) in enumerate(zip(a, b), 1):
    print(f"  round {i}: {a_name} {x:,.0f}  {b_name} {y:,.0f}  ratio {x / y:.2f}")
ma, mb = statistics.median(a), statistics.median(b)
print(f"  median: {a_name} {ma:,.0f} jobs/s, {b_name} {mb:,.0f} jobs/s, ratio {ma / mb:.2f}")
PY
}

pysaas_drain() { # BROKER
  "$bin" bench --database-url "$pg" --broker "$1" --phases drain --jobs "$n" --concurrency "$conc" \
    | rate_of '^drain run 1'
}

compare_pg() {
  local a=() b=()
  for _ in $(seq 1 "$rounds"); do
    b+=("$(N=$n bench/graphile-worker.sh | rate_of 'drain:')")
    a+=("$(pysaas_drain store)")
  done
  echo "PostgreSQL store drain, N=$n (PySaaS concurrency $conc, graphile-worker concurrency 24 + local queue 500):"
  summary PySaaS graphile-worker "${a[@]}" -- "${b[@]}"
}

compare_redis() {
  local a=() b=()
  for _ in $(seq 1 "$rounds"); do
    b+=("$(N=$n REDIS_URL="${redis%/0}" bench/bullmq.sh | rate_of 'drain best:')")
    a+=("$(pysaas_drain "$redis")")
  done
  echo "Redis drain, N=$n (PySaaS: Redis Streams, state in PostgreSQL; BullMQ: best of concurrency 50/200):"
  summary PySaaS BullMQ "${a[@]}" -- "${b[@]}"
}

compare_amqp() {
  local a=() raw=() c=()
  for _ in $(seq 1 "$rounds"); do
    raw+=("$("$bin" bench --database-url "$pg" --broker "$amqp" --phases raw --jobs "$n" --concurrency "$conc" | rate_of '^drain ceiling')")
    a+=("$(pysaas_drain "$amqp")")
  done
  # Celery is slow: one run of each pool per comparison.
  local celery
  celery=$(N=$n CONCURRENCY=$conc bench/celery.sh 2>>"${TMPDIR:-/tmp}/pysaas-bench-celery.log" | grep -Eo '[0-9]+ tasks/s' | grep -Eo '^[0-9]+' | sort -n | tail -n1)
  echo "RabbitMQ drain, N=$n (PySaaS concurrency $conc; raw lapin: persistent publish+confirm, consume+ack, prefetch $conc):"
  summary PySaaS "raw lapin" "${a[@]}" -- "${raw[@]}"
  echo "  Celery 5 (acks_late, best of prefork/threads, one run): $celery tasks/s; PySaaS median / Celery: $(python3 -c "import statistics,sys; print(f'{statistics.median([float(x) for x in sys.argv[2:]]) / float(sys.argv[1]):.1f}')" "$celery" "${a[@]}")"
}

case "${1:-all}" in
  pg) compare_pg ;;
  redis) compare_redis ;;
  amqp) compare_amqp ;;
  all) compare_pg; compare_redis; compare_amqp ;;
  *) echo "usage: bench/compare.sh pg|redis|amqp|all" >&2; exit 2 ;;
esac
