# Sourced by run.sh (uses its ROOT, PROXY, TMP and PIDS): the stack of tests/live_silent.rs.
#
#   browser -> a second mpush-proxy -> silent-relay.mjs (goes silent on command)
#           -> a standalone mpush-gateway with short heartbeat bounds and run.sh's key pair
#
# The tests ask for a 3 s heartbeat, so they take seconds, not minutes. The gateway's push API
# gets its own CORS shim. Exports MPUSH_TEST_SILENT_WS_URL, MPUSH_TEST_SILENT_CONTROL_URL and
# MPUSH_TEST_SILENT_API_URL (the public key is run.sh's MPUSH_TEST_PUBLIC_KEY).
GATEWAY=${MPUSH_GATEWAY_BIN:-$(dirname "$PROXY")/mpush-gateway}
[ -x "$GATEWAY" ] || cargo build -p mpush-gateway
"$GATEWAY" --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --key-file "$TMP/key.toml" \
  --min-heartbeat 2000 --max-heartbeat 60000 >"$TMP/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^mpush-gateway: MPUSH on' "$TMP/gateway.log" && break; sleep 0.1; done
GW_LINE=$(grep -m1 '^mpush-gateway: MPUSH on' "$TMP/gateway.log") ||
  { cat "$TMP/gateway.log"; echo "live: the gateway for the silent-upstream tests did not start" >&2; exit 1; }
GW_ADDR=$(sed 's/^mpush-gateway: MPUSH on \([^,]*\),.*/\1/' <<<"$GW_LINE")
GW_API=$(sed 's#.*push API on \(http://[^ ]*\).*#\1#' <<<"$GW_LINE")

node "$ROOT/client-wasm/tests/live/silent-relay.mjs" "$GW_ADDR" >"$TMP/relay.json" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$TMP/relay.json" ] && break; sleep 0.1; done
relay_port() { node -e "console.log(require('$TMP/relay.json')['$1'])"; }

SILENT_PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$PROXY" --listen "127.0.0.1:$SILENT_PORT" --allowed-origin '*' --upstream "127.0.0.1:$(relay_port relay)" \
  >"$TMP/proxy-silent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SILENT_PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$SILENT_PORT/healthz" >/dev/null ||
  { cat "$TMP/proxy-silent.log"; echo "live: the second proxy did not start" >&2; exit 1; }

node "$ROOT/client-wasm/tests/live/cors-shim.mjs" "$GW_API" >"$TMP/shim-silent.port" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$TMP/shim-silent.port" ] && break; sleep 0.1; done

export MPUSH_TEST_SILENT_WS_URL="ws://127.0.0.1:$SILENT_PORT/mpush"
export MPUSH_TEST_SILENT_CONTROL_URL="http://127.0.0.1:$(relay_port control)"
export MPUSH_TEST_SILENT_API_URL="http://127.0.0.1:$(cat "$TMP/shim-silent.port")"
# These tests wait out liveness timeouts (about 30 s in all), more than the runner's default
# of 20 s per test binary.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-120}
echo "live: silent upstream: ws $MPUSH_TEST_SILENT_WS_URL -> relay (control" \
  "$MPUSH_TEST_SILENT_CONTROL_URL) -> gateway $GW_ADDR (api $MPUSH_TEST_SILENT_API_URL)"
