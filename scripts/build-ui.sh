#!/usr/bin/env bash
# Builds the dashboard (frontend/ → frontend/out) when its output is missing or stale: the
# OpenAPI document changed (the typed client is generated from it) or a source file is newer
# than the last build. Usage: scripts/build-ui.sh PYSAAS_BINARY
set -euo pipefail
cd "$(dirname "$0")/../frontend"
. ../scripts/lib.sh
bin=$1
export NEXT_TELEMETRY_DISABLED=1
"$bin" openapi > openapi.json.new
stamp=out/.built
if [ -f "$stamp" ] && cmp -s openapi.json.new openapi.json \
   && [ -z "$(find src package.json package-lock.json next.config.mjs -newer "$stamp" -print -quit)" ]; then
  rm openapi.json.new
  exit 0
fi
mv openapi.json.new openapi.json
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing the dashboard's npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
log "building the dashboard"
npm run --silent gen:api >/dev/null
npx next build >"${PYSAAS_RUN_DIR:-${TMPDIR:-/tmp}}/next-build.log" 2>&1 || {
  cat "${PYSAAS_RUN_DIR:-${TMPDIR:-/tmp}}/next-build.log" >&2
  exit 1
}
touch "$stamp"
