#!/usr/bin/env bash
# Packs the npm package (scripts/npm-pack.sh), installs the tarball with TypeScript into a fresh temp
# directory, and type-checks tests/consumer-ts/consumer.ts against it with `tsc --noEmit`,
# once with moduleResolution "Bundler" and once with "NodeNext". Builds pkg/ first if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"

[ -f pkg/mpush_client_wasm_bg.wasm ] || ./scripts/build-wasm.sh

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TARBALL=$(scripts/npm-pack.sh --silent --pack-destination "$TMP" | tail -n 1)
echo "consumer-ts: packed $TARBALL ($(tar -tzf "$TMP/$TARBALL" | tr '\n' ' '))"

TS_VERSION=$(node -p "require('./node_modules/typescript/package.json').version" 2>/dev/null || echo 5)
cd "$TMP"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
npm install --no-audit --no-fund --prefer-offline "./$TARBALL" "typescript@$TS_VERSION" >/dev/null
cp "$ROOT/tests/consumer-ts/consumer.ts" "$ROOT/tests/consumer-ts/tsconfig.json" .
npx tsc --noEmit -p tsconfig.json
npx tsc --noEmit -p tsconfig.json --module NodeNext --moduleResolution NodeNext
echo "consumer-ts: tsc --noEmit passed (Bundler and NodeNext resolution, typescript $TS_VERSION)"
