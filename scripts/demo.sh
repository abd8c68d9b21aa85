#!/usr/bin/env bash
# The demo: installs what is missing, builds the browser package and the proxy, and starts
# mpush-proxy in embedded mode (in-process mpush-gateway) serving the console on
# http://127.0.0.1:8080 (override with PORT=...). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
PORT=${PORT:-8080}

./scripts/setup.sh
./scripts/build-wasm.sh
./scripts/vendor-www.sh
echo "demo: building mpush-proxy (release)"
cargo build --release --locked -q -p mpush-proxy
echo
echo "demo: open http://127.0.0.1:$PORT/ in your browser (Ctrl-C to stop)"
echo
exec target/release/mpush-proxy --listen "127.0.0.1:$PORT" --www www --gateway-key-file .mpush-gateway-key.toml
