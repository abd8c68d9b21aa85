#!/usr/bin/env bash
# The real-MPUSH interop suite: every scenario against MPUSH 0.8.0 (released artifacts from
# Maven Central, with its ZooKeeper and Redis) and against mpush-gateway, side by side.
#
#   tests/real-mpush/run.sh            # what ./scripts/test.sh runs
#   ONLY=kick,tunnel tests/real-mpush/run.sh
#
# Against your own MPUSH deployment instead of the one the suite starts (scenarios that need
# the suite's own settings -- its echo service, its heartbeat bounds -- are skipped there, and
# nothing is compared with the gateway). The push API runs locally on MPUSH's PushSender, which
# finds your gateway servers in ZooKeeper and the users' routes in Redis:
#   MPUSH_EXISTING=10.0.0.5:3000 MPUSH_EXISTING_PUBLIC_KEY=MIGfMA0G... \
#   MPUSH_EXISTING_ZK=10.0.0.9:2181 MPUSH_EXISTING_REDIS=10.0.0.9:6379 tests/real-mpush/run.sh
# (tests/real-mpush/README.md: Redis cluster/single mode, ZooKeeper namespace and digest)
#
# Prints one line per scenario and server (PASS real-mpush ... / PASS gateway ...), one per
# comparison (PASS same ...), the tolerated differences by name, and "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"

# Java side: MPUSH's jars and our drivers (skipped when up to date).
tests/real-mpush/build.sh
# Rust side: the gateway and the proxy (a no-op when cargo test/build already made them). The
# suite runs the proxy with --upstream only; the "demo" feature keeps the debug binary the one
# tests/e2e and scripts/test.sh build, instead of rebuilding it without.
if [ -z "${MPUSH_PROXY_BIN:-}" ] || [ -z "${MPUSH_GATEWAY_BIN:-}" ]; then
  cargo build -q -p mpush-gateway --bins --locked
  cargo build -q -p mpush-proxy --bins --locked --features demo
fi
# The browser package as a user gets it: the packed tarball in www/vendor.
if [ ! -f www/vendor/mpush-client-wasm/pkg/index.js ] || [ "${REBUILD_PACKAGE:-0}" = 1 ]; then
  npm run --silent build
  scripts/vendor-www.sh
fi

status=0
# The proxy's registry reader against ZooKeeper 3.4.8 from MPUSH's jars (ignored by a plain
# cargo test, which runs before build.sh has fetched them).
cargo test -q -p mpush-proxy --test zk_registry --locked -- --ignored || status=1
node tests/real-mpush/browser.mjs || status=1
node tests/real-mpush/java-sdk.mjs || status=1
# Two MPUSH nodes in one ZooKeeper and Redis behind one proxy started with --zk only: failover,
# ZooKeeper down and back. Needs the suite's own servers (it stops and starts them).
if [ -z "${MPUSH_EXISTING:-}" ]; then
  node tests/real-mpush/cluster.mjs || status=1
else
  echo "SKIP cluster: needs the suite's own MPUSH nodes and ZooKeeper (MPUSH_EXISTING is set)"
fi
exit $status
