#!/usr/bin/env bash
# Pushes acked vs pushes delivered across a gateway SIGTERM and restart, on both paths:
#
#   push API -> clients:  API results `success` (ack auto: the client acked; ack none: written
#                         to the connection) vs pushes the clients received;
#   clients -> webhook:   upstream pushes the clients got an Ack for vs pushes the webhook
#                         stored.
#
# CLIENTS native clients stay connected (reconnecting when the gateway goes away) while RATE
# pushes per second flow each way for DURATION seconds; at RESTART_AT seconds the gateway gets
# SIGTERM (drain-timeout DRAIN_TIMEOUT ms) and is started again once it has exited. Target:
# "acked and lost 0" on both lines (gateway/examples/lossless.rs; it exits 1 otherwise).
#
#   ./scripts/bench-lossless.sh
# The webhook answers WEBHOOK_DELAY ms after storing a push, so posts are in flight at the
# SIGTERM. Environment: CLIENTS (50), RATE (400), DURATION (10), RESTART_AT (4),
# DRAIN_TIMEOUT (5000), WEBHOOK_DELAY (50), WEBHOOK_CONCURRENCY (64, the gateway's
# [upstream] webhook-concurrency: below RATE x WEBHOOK_DELAY / 1000 the webhook queue backs up).
# A bench, not a test: the other counts depend on the machine and its load. Everything
# listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-50}
RATE=${RATE:-400}
DURATION=${DURATION:-10}
RESTART_AT=${RESTART_AT:-4}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-5000}
WEBHOOK_DELAY=${WEBHOOK_DELAY:-50}
WEBHOOK_CONCURRENCY=${WEBHOOK_CONCURRENCY:-64}

cargo build --release -q -p mpush-gateway --bin mpush-gateway --example lossless
TARGET=${CARGO_TARGET_DIR:-target}
"$TARGET/release/examples/lossless" --gateway "$TARGET/release/mpush-gateway" \
  --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" --restart-at "$RESTART_AT" \
  --drain-timeout "$DRAIN_TIMEOUT" --webhook-delay "$WEBHOOK_DELAY" \
  --webhook-concurrency "$WEBHOOK_CONCURRENCY"
