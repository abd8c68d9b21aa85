#!/usr/bin/env bash
# Load benchmark: N sessions through mpush-proxy (WebSocket) and directly over TCP to
# mpush-gateway, in the same run. Prints sessions held, heartbeats, push throughput, latency
# percentiles at a fixed rate, and the proxy's memory per idle session.
#
#   ./scripts/bench.sh [SESSIONS]          (default 1000; 10000 needs ~2 min on 2 cores)
# Environment: HOLD (s, default 15), BURST (pushes, default 20000), RATE (pushes/s, 1000),
# RATE_SECONDS (5), HEARTBEAT (ms, 10000), PROXIES (proxy processes sharing the sessions
# round-robin; default: 1, or as many as the open-file limit needs). Everything listens on
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
HOLD=${HOLD:-15}
BURST=${BURST:-20000}
RATE=${RATE:-1000}
RATE_SECONDS=${RATE_SECONDS:-5}
HEARTBEAT=${HEARTBEAT:-10000}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Each proxy process holds two descriptors per session (browser + upstream); the gateway and
# the load generator one each. Without CAP_SYS_RESOURCE the hard limit may be lower than one
# proxy needs; the proxy is stateless, so the sessions are then spread over several processes,
# as a deployment would spread them over instances.
PER_PROXY=$N
if [ "$(ulimit -n)" != unlimited ]; then
  PER_PROXY=$((($(ulimit -n) - 200) / 2))
  if [ $((N + 200)) -gt "$(ulimit -n)" ]; then
    echo "bench: $N sessions need $((N + 200)) descriptors in the gateway, but ulimit -n is $(ulimit -n)" >&2
    exit 2
  fi
fi
PROXIES=${PROXIES:-$(((N + PER_PROXY - 1) / PER_PROXY))}
[ "$PROXIES" -ge 1 ] || PROXIES=1
cargo build --release --locked -q -p mpush-proxy -p mpush-gateway -p mpush-loadgen
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "bench failed ($status); last log lines:" >&2
    for f in "$WORK"/*.log; do echo "--- $(basename "$f")" >&2; tail -n 20 "$f" >&2; done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW_PORT=$(port); API_PORT=$(port); PROXY_PORT=$(port)

# All sessions reach the gateway from 127.0.0.1 (the load generator and the proxies): no
# per-IP caps.
"$BIN/mpush-gateway" --listen "127.0.0.1:$GW_PORT" --api-listen "127.0.0.1:$API_PORT" \
  --key-file "$WORK/key.toml" --min-heartbeat "$HEARTBEAT" --max-heartbeat "$HEARTBEAT" \
  --max-connections-per-ip 0 --max-unauthenticated-per-ip 0 \
  >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/key.toml" ] && curl -sf "127.0.0.1:$API_PORT/health" >/dev/null && break; sleep 0.1; done
KEY=$(curl -sf "127.0.0.1:$API_PORT/public-key" | python3 -c 'import sys,json; d=sys.stdin.read(); print(json.loads(d)["publicKey"] if d.strip().startswith("{") else d.strip())')

ORIGIN="http://loadgen.invalid"
PROXY_PIDS=()
WS_URLS=()
for k in $(seq "$PROXIES"); do
  PORT=$(port)
  "$BIN/mpush-proxy" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$GW_PORT" --allowed-origin "$ORIGIN" \
    --max-connections $((N + 100)) --max-connections-per-ip $((N + 100)) --log-level warn \
    >"$WORK/proxy-$k.log" 2>&1 &
  PROXY_PIDS+=($!)
  PIDS+=($!)
  WS_URLS+=("ws://127.0.0.1:$PORT/mpush")
  for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
done
join() { local IFS=,; echo "$*"; }
rss() { local t=0 p; for p in "${PROXY_PIDS[@]}"; do t=$((t + $(awk '/VmRSS/ {print $2}' /proc/$p/status))); done; echo $t; }

echo "bench: $N sessions, gateway 127.0.0.1:$GW_PORT, $PROXIES proxy process(es): ${WS_URLS[*]}"
echo "proxy RSS before: $(rss) KB"
"$BIN/mpush-loadgen" --sessions "$N" --public-key "$KEY" \
  --tcp "127.0.0.1:$GW_PORT" --ws "$(join "${WS_URLS[@]}")" --origin "$ORIGIN" \
  --api "http://127.0.0.1:$API_PORT" --proxy-pid "$(join "${PROXY_PIDS[@]}")" --heartbeat "$HEARTBEAT" \
  --hold-seconds "$HOLD" --burst "$BURST" --rate "$RATE" --rate-seconds "$RATE_SECONDS"
echo "proxy RSS after:  $(rss) KB"
