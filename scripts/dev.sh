#!/usr/bin/env bash
# README command 1: PySaaS on the embedded default (SQLite + in-process dispatch), no servers
# needed, with the dashboard. API and dashboard on http://127.0.0.1:8080 unless --listen says
# otherwise; data in ./.pysaas.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --locked --bin pysaas
bin="$CARGO_TARGET_DIR/debug/pysaas"
scripts/build-ui.sh "$bin"
export PYSAAS_UI_DIR="${PYSAAS_UI_DIR:-$PWD/frontend/out}"
exec "$bin" dev "$@"
