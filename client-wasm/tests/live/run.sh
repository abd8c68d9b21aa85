#!/usr/bin/env bash
# Runs the client-wasm browser tests LIVE: starts `mpush-proxy --demo` (in-process
# mpush-gateway), a CORS shim for its push API and a scripted fake MPUSH server
# (fake-mpush.mjs) on 127.0.0.1, bakes their addresses into the test build (MPUSH_TEST_* are
# read with option_env!), and runs wasm-pack test in Chromium.
#
# Usage: client-wasm/tests/live/run.sh   (MPUSH_PROXY_BIN overrides target/debug/mpush-proxy)
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
PROXY=${MPUSH_PROXY_BIN:-$ROOT/target/debug/mpush-proxy}
# Demo mode needs the "demo" feature (a no-op when `cargo test` already built it so).
[ -n "${MPUSH_PROXY_BIN:-}" ] || cargo build -q -p mpush-proxy --features demo

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$PROXY" --demo --listen "127.0.0.1:$PORT" --allowed-origin '*' --gateway-key-file "$TMP/key.toml" >"$TMP/proxy.log" 2>&1 &
PIDS+=($!)
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf "$BASE/demo-config.json" -o "$TMP/config.json" && break; sleep 0.1; done
[ -s "$TMP/config.json" ] || { cat "$TMP/proxy.log"; echo "proxy did not start" >&2; exit 1; }

node "$ROOT/client-wasm/tests/live/cors-shim.mjs" "$BASE/api" >"$TMP/shim.port" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$TMP/shim.port" ] && break; sleep 0.1; done

node "$ROOT/client-wasm/tests/live/fake-mpush.mjs" >"$TMP/fake.port" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$TMP/fake.port" ] && break; sleep 0.1; done

# tests/live_silent.rs: a second proxy whose upstream can go silent (MPUSH_TEST_SILENT_*).
. "$ROOT/client-wasm/tests/live/silent-stack.sh"

cfg() { node -e "console.log(require('$TMP/config.json')['$1'])"; }
export MPUSH_TEST_WS_URL="ws://127.0.0.1:$PORT$(cfg wsPath)"
export MPUSH_TEST_PUBLIC_KEY=$(cfg publicKey)
export MPUSH_TEST_API_URL="http://127.0.0.1:$(cat "$TMP/shim.port")"
export MPUSH_TEST_ECHO_URL=$(cfg echoUrl)
export MPUSH_TEST_FAKE_URL="127.0.0.1:$(cat "$TMP/fake.port")"
echo "live: ws $MPUSH_TEST_WS_URL, api $MPUSH_TEST_API_URL, echo $MPUSH_TEST_ECHO_URL, fake $MPUSH_TEST_FAKE_URL"
wasm-pack test --headless --chrome client-wasm "$@"
