#!/usr/bin/env bash
# Side-by-side gateway benchmark: Aura (`aura bench gateway`) and LiteLLM's proxy (PyPI `litellm[proxy]`, installed in a
# virtualenv by this script) in front of the same fake upstream (`aura bench gateway --serve-fake`, 20 ms latency by
# default), with the same load: added latency p50/p99 at concurrency 1 and 64, and max requests/s. Prints both and
# the ratios. Usage: scripts/bench-litellm.sh   (env: AURA=path/to/aura, REQUESTS=2000, LATENCY_MS=20,
# LITELLM_WORKERS=2, LITELLM_VENV=.bench/litellm-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
AURA=${AURA:-target/release/aura}
REQUESTS=${REQUESTS:-2000}
LATENCY_MS=${LATENCY_MS:-20}
WORKERS=${LITELLM_WORKERS:-2}
VENV=${LITELLM_VENV:-.bench/litellm-venv}
FAKE_PORT=${FAKE_PORT:-18471}
LITELLM_PORT=${LITELLM_PORT:-18472}
OUT=$(mktemp -d)

[ -x "$AURA" ] || cargo build --release -p aura-cli
if [ ! -x "$VENV/bin/litellm" ]; then
  echo "installing litellm[proxy] into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'litellm[proxy]'
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT

"$AURA" bench gateway --serve-fake "$FAKE_PORT" --latency-ms "$LATENCY_MS" >"$OUT/fake.log" 2>&1 &
pids+=($!)
UPSTREAM="http://127.0.0.1:$FAKE_PORT"

cat >"$OUT/litellm.yaml" <<YAML
model_list:
  - model_name: bench-model
    litellm_params: { model: openai/bench-model, api_base: "$UPSTREAM/v1", api_key: fake }
  - model_name: bench-fast
    litellm_params: { model: openai/bench-fast, api_base: "$UPSTREAM/v1", api_key: fake }
general_settings:
  master_key: sk-bench
litellm_settings:
  telemetry: false
YAML
"$VENV/bin/litellm" --config "$OUT/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers "$WORKERS" \
  >"$OUT/litellm.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$LITELLM_PORT/health/liveliness" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$LITELLM_PORT/health/liveliness" >/dev/null || { cat "$OUT/litellm.log" >&2; exit 1; }

"$AURA" bench gateway --json --requests "$REQUESTS" --upstream "$UPSTREAM" >"$OUT/aura.json"
"$AURA" bench gateway --json --requests "$REQUESTS" --upstream "$UPSTREAM" \
  --target "http://127.0.0.1:$LITELLM_PORT" --key sk-bench >"$OUT/litellm.json"

python3 - "$OUT/aura.json" "$OUT/litellm.json" <<'PY'
import json, sys
a, l = (json.load(open(p)) for p in sys.argv[1:3])
print(f"upstream latency {a['upstream_latency_ms']} ms, {a['requests']} requests per run")
print(f"fdatasync floor of Aura's data dir: p50 {a['fdatasync_p50_us']} µs, p99 {a['fdatasync_p99_us']} µs; "
      f"audit entries per fsync: " + ", ".join(f"c={r['concurrency']} {r['audit_entries_per_fsync'] or 0:.1f}" for r in a["runs"])
      + f", max {a['max_audit_entries_per_fsync'] or 0:.1f}")
if "idle_wake_rtt_p50_us" in a:
    print(f"loopback round trip after {a['upstream_latency_ms']} ms idle (the wake-up floor of one hop): "
          f"p50 {a['idle_wake_rtt_p50_us']} µs, p99 {a['idle_wake_rtt_p99_us']} µs")
print(f"{'':22}{'Aura':>12}{'LiteLLM':>12}{'ratio':>10}")
for ra, rl in zip(a["runs"], l["runs"]):
    c = ra["concurrency"]
    for key, label in (("added_p50_us", "added p50 µs"), ("added_p99_us", "added p99 µs")):
        ratio = rl[key] / max(ra[key], 1)
        print(f"c={c:<3}{label:<18}{ra[key]:>12}{rl[key]:>12}{ratio:>9.1f}x")
    ratio = ra["requests_per_sec"] / max(rl["requests_per_sec"], 1e-9)
    print(f"c={c:<3}{'requests/s':<18}{ra['requests_per_sec']:>12.0f}{rl['requests_per_sec']:>12.0f}{ratio:>9.1f}x")
ratio = a["max_requests_per_sec"] / max(l["max_requests_per_sec"], 1e-9)
print(f"{'max requests/s':<22}{a['max_requests_per_sec']:>12.0f}{l['max_requests_per_sec']:>12.0f}{ratio:>9.1f}x")
print(json.dumps({"aura": a, "litellm": l}))
PY
