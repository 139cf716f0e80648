#!/usr/bin/env bash
# Two PySaaS builds against each other on one machine, alternately round by round (a checkpoint
# before each run), per transport: each run's drain rate, the medians and after/before.
#   bench/ab.sh BEFORE_BIN AFTER_BIN store redis://127.0.0.1:6379/0 amqp://guest:guest@127.0.0.1:5672/%2f
# Env: ROUNDS (5), N (20000), CONCURRENCY (64), DATABASE_URL. Build the "before" binary from a
# worktree (`git worktree add /tmp/before REV`, `cargo build --release`) and copy it aside.
set -euo pipefail
before=$1 after=$2
shift 2
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
rounds=${ROUNDS:-5}
rate() { grep -E '^drain run 1' | grep -Eo '[0-9]+ jobs/s' | head -n1 | grep -Eo '^[0-9]+'; }
drain() { # BIN BROKER
  psql "$pg" -qc CHECKPOINT
  "$1" bench --database-url "$pg" --broker "$2" --phases drain --jobs "${N:-20000}" \
    --concurrency "${CONCURRENCY:-64}" | rate
}
for broker in "$@"; do
  a=() b=()
  for _ in $(seq "$rounds"); do
    a+=("$(drain "$before" "$broker")")
    b+=("$(drain "$after" "$broker")")
  done
  python3 - "$broker" "${a[@]}" -- "${b[@]}" <<'PY'
import statistics, sys
name, rest = sys.argv[1], sys.argv[2:]
i = rest.index("--")
a = [float(x) for x in rest[:i]]
b = [float(x) for x in rest[i + 1:]]
print(f"{name}: before {', '.join(f'{x:,.0f}' for x in a)}")
print(f"{' ' * len(name)}  after  {', '.join(f'{x:,.0f}' for x in b)}")
ma, mb = statistics.median(a), statistics.median(b)
print(f"{' ' * len(name)}  medians {ma:,.0f} -> {mb:,.0f} jobs/s, after/before {mb / ma:.2f}")
PY
done
