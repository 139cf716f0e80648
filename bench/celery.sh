#!/usr/bin/env bash
# Measures Celery 5's drain of N no-op tasks on the local RabbitMQ (acks_late; prefork and
# threads pools) for the side-by-side table in docs/benchmarks.md.
#   bench/celery.sh            # N=20000
#   N=5000 bench/celery.sh
set -euo pipefail
cd "$(dirname "$0")"
venv="${PYSAAS_BENCH_VENV:-$HOME/.cache/pysaas/celery-venv}"
if [ ! -x "$venv/bin/celery" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'celery>=5,<6'
fi
exec "$venv/bin/python" celery_drain.py
