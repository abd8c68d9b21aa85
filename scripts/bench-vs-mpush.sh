#!/usr/bin/env bash
# mpush-gateway beside the real MPUSH 0.8.0 (Maven Central jars, started as tests/real-mpush
# starts it) under the same mpush-loadgen run over direct TCP: sessions opened per second (RSA
# handshake + bind), server memory per session (RSS growth / sessions, so sessions per GB),
# pushes per second through each server's push API, latency at a fixed rate, server CPU per
# push. Figures: gateway/README.md ("Performance"). Everything on 127.0.0.1.
#
#   ./scripts/bench-vs-mpush.sh
# Environment: SESSIONS (2000), HOLD (s, 10), BURST (20000), RATE (1000/s), RATE_SECONDS (5),
# HEARTBEAT (ms, 10000), API_CONCURRENCY (push API calls in flight in the burst, 8),
# ONLY (gateway | mpush).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p mpush-gateway -p mpush-loadgen
tests/real-mpush/build.sh >/dev/null
node tests/bench-vs-mpush/run.mjs
