#!/usr/bin/env bash
# README command 1: PySaaS on the embedded default (SQLite + in-process dispatch), no servers
# needed. API on http://127.0.0.1:8080 unless --listen says otherwise; data in ./.pysaas.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
exec cargo run --locked --bin pysaas -- dev "$@"
