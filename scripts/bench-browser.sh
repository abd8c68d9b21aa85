#!/usr/bin/env bash
# Browser benchmark of the npm package: packs it as a user installs it (scripts/npm-pack.sh, which builds
# pkg/ with scripts/build-wasm.sh when stale), then tests/bench-browser/bench.mjs runs it in
# headless Chromium against a stand-in MPUSH server on 127.0.0.1 and prints the package's
# gzipped size, the client's handshake time and the push delivery rate.
#
#   ./scripts/bench-browser.sh
# Environment: HANDSHAKES (connects measured, 50), PUSHES (per run, 100000), PUSH_BYTES (64),
# CHROMIUM (/usr/bin/chromium). Targets (issue 12): <= 55 KB gzipped, handshake < 5 ms,
# >= 50,000 pushes/s.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
scripts/npm-pack.sh --silent --pack-destination "$WORK" >/dev/null
tar -xzf "$WORK"/mpush-client-wasm-*.tgz -C "$WORK"
node tests/bench-browser/bench.mjs "$WORK/package"
