# Shared by the peer benchmark scripts: npm packages installed once into a cache outside the
# repository ($PYSAAS_BENCH_NODE), and a random suffix for throw-away names.
export PYSAAS_BENCH_NODE="${PYSAAS_BENCH_NODE:-$HOME/.cache/pysaas/bench-node}"

# ensure_npm PACKAGE MAJOR [EXTRA...]: installs PACKAGE@MAJOR (and EXTRA packages) unless
# PACKAGE at that major version and every EXTRA are already there.
ensure_npm() {
  local pkg=$1 major=$2; shift 2
  local ok=1 extra
  grep -qs "\"version\": \"${major//./\\.}\\." "$PYSAAS_BENCH_NODE/node_modules/$pkg/package.json" || ok=0
  for extra in "$@"; do
    [ -f "$PYSAAS_BENCH_NODE/node_modules/$extra/package.json" ] || ok=0
  done
  [ "$ok" = 1 ] && return 0
  mkdir -p "$PYSAAS_BENCH_NODE"
  [ -f "$PYSAAS_BENCH_NODE/package.json" ] || echo '{"private": true}' >"$PYSAAS_BENCH_NODE/package.json"
  npm install --prefix "$PYSAAS_BENCH_NODE" --no-audit --no-fund --loglevel=error \
    "$pkg@$major" "$@" >&2
}

random_suffix() { od -An -N4 -tx4 /dev/urandom | tr -d ' '; }

# report_medians NAME LABEL_A LABEL_B A... -- B...: each side's runs, their medians and B/A.
report_medians() {
  python3 - "$@" <<'PY'
import statistics, sys
name, la, lb, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
i = rest.index("--")
a = [float(x) for x in rest[:i]]
b = [float(x) for x in rest[i + 1:]]
pad = " " * len(name)
print(f"{name}: {la} {', '.join(f'{x:,.0f}' for x in a)}")
print(f"{pad}  {lb} {', '.join(f'{x:,.0f}' for x in b)}")
ma, mb = statistics.median(a), statistics.median(b)
print(f"{pad}  medians {ma:,.0f} -> {mb:,.0f} jobs/s, {lb}/{la} {mb / ma:.2f}")
PY
}
