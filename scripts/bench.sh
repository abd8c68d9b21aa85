#!/usr/bin/env bash
# Load benchmark: N sessions through mpush-proxy (WebSocket) and directly over TCP to
# mpush-gateway, in the same run. Prints sessions held, heartbeats, push throughput, latency
# percentiles at a fixed rate, and the proxy's memory per idle session.
#
#   ./scripts/bench.sh [SESSIONS]          (default 1000; 10000 needs ~2 min on 2 cores)
# Environment: HOLD (s, default 15), BURST (pushes, default 20000), RATE (pushes/s, 1000),
# RATE_SECONDS (5), HEARTBEAT (ms, 10000). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
HOLD=${HOLD:-15}
BURST=${BURST:-20000}
RATE=${RATE:-1000}
RATE_SECONDS=${RATE_SECONDS:-5}
HEARTBEAT=${HEARTBEAT:-10000}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The proxy holds two descriptors per session (browser + upstream); the gateway and the
# load generator one each. Without CAP_SYS_RESOURCE the hard limit may be lower than that.
if [ "$(ulimit -n)" != unlimited ] && [ $((2 * N + 200)) -gt "$(ulimit -n)" ]; then
  echo "bench: $N sessions need $((2 * N + 200)) file descriptors in mpush-proxy, but ulimit -n is $(ulimit -n)" >&2
  echo "       (hard limit $(ulimit -Hn)); use at most $((($(ulimit -n) - 200) / 2)) sessions or raise the limit" >&2
  exit 2
fi
cargo build --release --locked -q -p mpush-proxy -p mpush-gateway -p mpush-loadgen
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "bench failed ($status); last log lines:" >&2
    for f in proxy gateway; do [ -f "$WORK/$f.log" ] && { echo "--- $f.log" >&2; tail -n 20 "$WORK/$f.log" >&2; }; done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW_PORT=$(port); API_PORT=$(port); PROXY_PORT=$(port)

"$BIN/mpush-gateway" --listen "127.0.0.1:$GW_PORT" --api-listen "127.0.0.1:$API_PORT" \
  --key-file "$WORK/key.toml" --min-heartbeat "$HEARTBEAT" --max-heartbeat "$HEARTBEAT" \
  >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/key.toml" ] && curl -sf "127.0.0.1:$API_PORT/health" >/dev/null && break; sleep 0.1; done
KEY=$(curl -sf "127.0.0.1:$API_PORT/public-key" | python3 -c 'import sys,json; d=sys.stdin.read(); print(json.loads(d)["publicKey"] if d.strip().startswith("{") else d.strip())')

"$BIN/mpush-proxy" --listen "127.0.0.1:$PROXY_PORT" --upstream "127.0.0.1:$GW_PORT" \
  --max-connections $((N + 100)) --max-connections-per-ip $((N + 100)) --log-level warn \
  >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
for _ in $(seq 100); do curl -sf "127.0.0.1:$PROXY_PORT/readyz" >/dev/null && break; sleep 0.1; done

echo "bench: $N sessions, gateway 127.0.0.1:$GW_PORT, proxy 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
echo "proxy RSS before: $(grep VmRSS /proc/$PROXY_PID/status | awk '{print $2}') KB"
"$BIN/mpush-loadgen" --sessions "$N" --public-key "$KEY" \
  --tcp "127.0.0.1:$GW_PORT" --ws "ws://127.0.0.1:$PROXY_PORT/mpush" --origin "http://127.0.0.1:$PROXY_PORT" \
  --api "http://127.0.0.1:$API_PORT" --proxy-pid "$PROXY_PID" --heartbeat "$HEARTBEAT" \
  --hold-seconds "$HOLD" --burst "$BURST" --rate "$RATE" --rate-seconds "$RATE_SECONDS"
echo "proxy RSS after:  $(grep VmRSS /proc/$PROXY_PID/status | awk '{print $2}') KB"
