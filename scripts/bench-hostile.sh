#!/usr/bin/env bash
# Hostile-client figures, one section per server, each printing a markdown table:
#
#   gateway: CPU per refused oversized handshake, CPU per complete handshake, and a legitimate
#            client's handshake latency (p50/p99/max) plus an open connection's heartbeat echo
#            while FLOOD connections send oversized, then maximum-size handshakes in a loop
#            (gateway/examples/handshake_flood.rs). The flood comes from 127.0.0.1, the
#            legitimate client first from 127.0.0.2 (another address: the realistic attack),
#            then from 127.0.0.1 (behind the same NAT or proxy as the attacker). Needs the
#            whole of 127.0.0.0/8 on loopback, as Linux has it.
#   proxy:   RSS per connection holding half an HTTP request head while PROXY_FLOOD (5000) of
#            them are held, and a legitimate WebSocket upgrade's latency before and during
#            that flood (scripts/bench-hostile-proxy.mjs; production build, default caps).
#
#   ./scripts/bench-hostile.sh [gateway] [proxy]     (default: every section)
# Environment: REFUSED (oversized attempts, default 20000), LEGIT (complete handshakes for
# the CPU figure, 500), FLOOD (flooding connections, 200), SAMPLES (legit handshakes timed
# during the flood, 200), RSA_WORKERS (gateway [limits] rsa-workers, 0 = one per core),
# LEGIT_FROM (the legit client's addresses, comma-separated, 127.0.0.2,127.0.0.1);
# proxy: PROXY_FLOOD (held connections, 5000), PROXY_SAMPLES (upgrades timed, 20).
# A bench, not a test: it asserts nothing; figures depend on the machine and its load.
# Everything listens on 127.0.0.1 only. Builds go to CARGO_TARGET_DIR when set.
set -euo pipefail
cd "$(dirname "$0")/.."
SECTIONS=${*:-gateway proxy}
REFUSED=${REFUSED:-20000}
LEGIT=${LEGIT:-500}
FLOOD=${FLOOD:-200}
SAMPLES=${SAMPLES:-200}
RSA_WORKERS=${RSA_WORKERS:-0}
LEGIT_FROM=${LEGIT_FROM:-127.0.0.2,127.0.0.1}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "bench-hostile failed ($status); last log lines:" >&2
    for f in "$WORK"/*.log; do [ -e "$f" ] && { echo "--- $(basename "$f")" >&2; tail -n 20 "$f" >&2; }; done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

machine() {
  echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared machines skew every figure)"
}

section_gateway() {
  cargo build --release --locked -q -p mpush-gateway --bin mpush-gateway --example handshake_flood
  local gw_port api_port gw_pid key
  gw_port=$(port)
  api_port=$(port)
  # Default limits: the 200 flooding connections stay within max-unauthenticated-per-ip (256),
  # so the figures are the cost of the work, not of refusals at accept.
  "$BIN/mpush-gateway" --listen "127.0.0.1:$gw_port" --api-listen "127.0.0.1:$api_port" \
    --key-file "$WORK/key.toml" --rsa-workers "$RSA_WORKERS" \
    >"$WORK/gateway.log" 2>&1 &
  gw_pid=$!
  PIDS+=("$gw_pid")
  for _ in $(seq 100); do curl -sf "127.0.0.1:$api_port/health" >/dev/null && break; sleep 0.1; done
  key=$(curl -sf "127.0.0.1:$api_port/public-key")
  echo "## gateway (release, default limits, rsa-workers $RSA_WORKERS; flood from 127.0.0.1, legit client from $LEGIT_FROM)"
  machine
  echo "listen backlog: gateway default 1024, net.core.somaxconn $(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo '?') (the kernel uses the smaller)"
  echo
  "$BIN/examples/handshake_flood" --gateway "127.0.0.1:$gw_port" --pid "$gw_pid" --public-key "$key" \
    --refused "$REFUSED" --legit "$LEGIT" --flood "$FLOOD" --samples "$SAMPLES" \
    --max-handshake-body 512 --clk-tck "$(getconf CLK_TCK)" --flood-from 127.0.0.1 --legit-from "$LEGIT_FROM"
  echo
  kill "$gw_pid" 2>/dev/null || true
}

section_proxy() {
  # The production binary (no "demo" feature), as deployed.
  cargo build --release --locked -q -p mpush-proxy --bin mpush-proxy
  echo "## proxy (release, default caps; handshake_timeout raised so held heads stay for the measurement)"
  machine
  echo
  FLOOD=${PROXY_FLOOD:-5000} SAMPLES=${PROXY_SAMPLES:-20} node scripts/bench-hostile-proxy.mjs "$BIN/mpush-proxy"
  echo
}

for s in $SECTIONS; do
  case "$s" in
    gateway) section_gateway ;;
    proxy) section_proxy ;;
    *) echo "bench-hostile: unknown section $s (sections: gateway proxy)" >&2; exit 2 ;;
  esac
done
