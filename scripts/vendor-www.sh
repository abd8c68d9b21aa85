#!/usr/bin/env bash
# Installs the packed npm tarball (exactly what scripts/npm-pack.sh makes and publishes) into
# www/vendor/mpush-client-wasm, where the demo console's import map points the bare
# specifier "mpush-client-wasm". Run after scripts/build-wasm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f pkg/mpush_client_wasm_bg.wasm ] || { echo "vendor-www: pkg/ is not built (scripts/build-wasm.sh)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
scripts/npm-pack.sh --silent --pack-destination "$TMP" >/dev/null
rm -rf www/vendor/mpush-client-wasm
mkdir -p www/vendor/mpush-client-wasm
tar -xzf "$TMP"/*.tgz -C www/vendor/mpush-client-wasm --strip-components=1
echo "vendor-www: installed $(ls "$TMP") into www/vendor/mpush-client-wasm"
