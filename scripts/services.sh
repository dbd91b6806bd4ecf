#!/usr/bin/env bash
# Starts the local services Aura's tests talk to (PostgreSQL, Redis, NATS JetStream) when they are down,
# and installs promtool (Debian `prometheus`) when it is missing. Safe to run repeatedly.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do up "$port" && return 0; sleep 0.1; done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

if ! up 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port 5432 PostgreSQL || exit 1
fi

if ! up 6379; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_port 6379 Redis || exit 1
fi

if ! up 4222; then
  echo "services: starting NATS (JetStream)"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  wait_port 4222 NATS || exit 1
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "services: installing promtool (Debian package prometheus)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || true
  fi
  command -v promtool >/dev/null 2>&1 || echo "services: promtool unavailable" >&2
fi

# The host-agent peer of `aura bench sensor --vs-node-exporter` (issue 5).
if ! command -v prometheus-node-exporter >/dev/null 2>&1; then
  echo "services: installing prometheus-node-exporter (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null 2>&1 || true
  fi
  command -v prometheus-node-exporter >/dev/null 2>&1 || echo "services: prometheus-node-exporter unavailable" >&2
fi

# S3-compatible server for the audit export tests (crates/aura-audit/tests/export.rs starts it itself).
if ! python3 -c 'import moto, boto3' >/dev/null 2>&1; then
  echo "services: installing moto[server] (PyPI)"
  python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]' || true
  python3 -c 'import moto' >/dev/null 2>&1 || echo "services: moto unavailable" >&2
fi

# The official Python MCP SDK: the real client of the MCP server tests (crates/aura-cli/tests/mcp.rs).
if ! python3 -c 'import mcp' >/dev/null 2>&1; then
  echo "services: installing the MCP Python SDK (PyPI mcp==2.3.0)"
  python3 -m pip install --quiet 'mcp==2.3.0' || python3 -m pip install --quiet --break-system-packages 'mcp==2.3.0' || true
  python3 -c 'import mcp' >/dev/null 2>&1 || echo "services: the mcp Python SDK is unavailable" >&2
fi

# Official LLM SDKs used as clients by the gateway tests (crates/aura-cli/tests/gateway.rs).
if ! python3 -c 'import openai, anthropic, google.genai' >/dev/null 2>&1; then
  echo "services: installing openai, anthropic and google-genai (PyPI)"
  python3 -m pip install --quiet openai anthropic google-genai \
    || python3 -m pip install --quiet --break-system-packages openai anthropic google-genai || true
  python3 -c 'import openai, anthropic, google.genai' >/dev/null 2>&1 || echo "services: LLM SDKs unavailable" >&2
fi

# curl: a real proxy client in crates/aura-cli/tests/proxy.rs.
if ! command -v curl >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null 2>&1
  command -v curl >/dev/null 2>&1 || echo "services: curl unavailable" >&2
fi

# nats-server binary for the mesh spool test, which runs its own server on a free port and stops/restarts it.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "services: nats-server binary missing (Debian package nats-server)" >&2
fi

# tansu: the Kafka-protocol broker the Kafka mesh conformance suite starts on a free port
# (crates/aura-mesh/tests/conformance_kafka.rs, `cargo test -p aura-mesh --features kafka`). Built once (~10-20 min),
# then it lives in ~/.cargo/bin; installed only when missing. cmake builds librdkafka for the `kafka` feature.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "services: installing tansu (cargo install --locked tansu --features dynostore)"
  # A persistent target dir: an interrupted build resumes where it stopped instead of starting over.
  CARGO_TARGET_DIR="$HOME/.cache/aura-tansu-build" cargo install --locked tansu --features dynostore >/tmp/tansu-install.log 2>&1 \
    || echo "services: tansu install failed (see /tmp/tansu-install.log)" >&2
fi
if ! command -v cmake >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null 2>&1
  command -v cmake >/dev/null 2>&1 || echo "services: cmake unavailable (needed by --features kafka)" >&2
fi
# librdkafka's cmake build (feature `kafka`) includes curl/curl.h.
if [ ! -e /usr/include/x86_64-linux-gnu/curl/curl.h ] && [ ! -e /usr/include/curl/curl.h ]; then
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4-openssl-dev >/dev/null 2>&1
  { [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ]; } \
    || echo "services: libcurl headers unavailable (needed by --features kafka)" >&2
fi
exit 0
