#!/usr/bin/env bash
# The demo: installs what is missing, builds the browser package and the proxy (with the
# cargo feature "demo"), and starts `mpush-proxy --demo` (in-process mpush-gateway) serving the console on
# http://127.0.0.1:8080 (override with PORT=...). Ctrl-C stops it.
#
#   ./scripts/demo.sh --mpush   the same console against the real MPUSH 0.8.0 (ZooKeeper, Redis,
#                               MPUSH, a PushApi on its PushSender) behind mpush-proxy; needs
#                               Java 17 and Maven (scripts/demo-mpush.mjs)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
PORT=${PORT:-8080}
MODE=embedded
case "${1:-}" in
  "") ;;
  --mpush) MODE=mpush ;;
  *) echo "usage: $0 [--mpush]" >&2; exit 2 ;;
esac

./scripts/setup.sh
./scripts/build-wasm.sh
./scripts/vendor-www.sh
echo "demo: building mpush-proxy (release, feature \"demo\")"
cargo build --release --locked -q -p mpush-proxy --features demo
PROXY=${CARGO_TARGET_DIR:-target}/release/mpush-proxy

if [ "$MODE" = mpush ]; then
  for tool in java mvn redis-server; do
    command -v "$tool" >/dev/null || { echo "demo --mpush: $tool is missing (scripts/setup.sh says how to get it)" >&2; exit 1; }
  done
  echo "demo: building the Java side (tests/real-mpush/build.sh: MPUSH 0.8.0 jars from Maven Central)"
  tests/real-mpush/build.sh
  PORT=$PORT MPUSH_PROXY_BIN=$PROXY exec node scripts/demo-mpush.mjs
fi

echo
echo "demo: open http://127.0.0.1:$PORT/ in your browser (Ctrl-C to stop)"
echo
exec "$PROXY" --demo --listen "127.0.0.1:$PORT" --www www --gateway-key-file .mpush-gateway-key.toml
