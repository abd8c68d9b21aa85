#!/usr/bin/env bash
# Checks the systemd units in deploy/ with systemd's own tools, without installing them:
#   * `systemd-analyze verify` (unit syntax, known keys, parsable values, an executable
#     ExecStart) prints nothing: the units are copied with ExecStart pointing at this build's
#     binaries, everything else as shipped;
#   * `systemd-analyze security --offline=yes` rates each unit's exposure at most 2.0 ("OK");
#   * the proxy unit's TimeoutStopSec outlasts drain_timeout in deploy/mpush-proxy.toml, so a
#     stop drains instead of being cut short by SIGKILL.
# It does not start the units: that needs systemd as PID 1 (not the case in containers).
#
# Usage: deploy/test-systemd.sh           (binaries from target/debug, built if missing)
#        deploy/test-systemd.sh --probe   exit 0 when systemd-analyze is here, else say why
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is not installed (Debian package systemd)"
  exit 1
fi
[ "${1:-}" = "--probe" ] && exit 0

MAX_EXPOSURE=2.0
BIN_DIR=${CARGO_TARGET_DIR:-$PWD/target}/debug
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() {
  echo "test-systemd: FAILED: $*" >&2
  exit 1
}

for name in mpush-proxy mpush-gateway; do
  [ -x "$BIN_DIR/$name" ] || cargo build --locked -q -p "$name" --bin "$name"
  unit=deploy/$name.service
  grep -q "^ExecStart=/usr/local/bin/$name " "$unit" || fail "$unit: ExecStart is not /usr/local/bin/$name"
  sed "s#^ExecStart=/usr/local/bin/$name #ExecStart=$BIN_DIR/$name #" "$unit" >"$TMP/$name.service"
  # verify exits 0 on warnings (unknown keys, bad values): any output is a failure.
  out=$(cd "$TMP" && systemd-analyze verify "$name.service" 2>&1) || fail "$unit: $out"
  [ -z "$out" ] || fail "$unit: systemd-analyze verify: $out"
  report=$(cd "$TMP" && systemd-analyze security --offline=yes "$name.service" 2>&1) ||
    fail "$unit: systemd-analyze security: $(tail -n 5 <<<"$report")"
  level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report")
  [ -n "$level" ] || fail "$unit: no exposure level in: $(tail -n 3 <<<"$report")"
  awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }' ||
    fail "$unit: exposure $level is above $MAX_EXPOSURE: $(grep '✗' <<<"$report" | head -n 20)"
  echo "test-systemd: $unit: verify clean, exposure $level (at most $MAX_EXPOSURE)"
done

secs() { # "30s", "1m", "10" -> seconds
  local v=${1//\"/}
  case $v in *ms) echo 0 ;; *m) echo $((${v%m} * 60)) ;; *s) echo "${v%s}" ;; *) echo "$v" ;; esac
}
drain=$(secs "$(sed -n 's/^drain_timeout *= *//p' deploy/mpush-proxy.toml)")
stop=$(secs "$(sed -n 's/^TimeoutStopSec=//p' deploy/mpush-proxy.service)")
[ -n "$drain" ] && [ -n "$stop" ] || fail "drain_timeout or TimeoutStopSec not found"
[ "$stop" -gt "$drain" ] || fail "TimeoutStopSec ($stop s) must exceed the proxy's drain_timeout ($drain s)"
echo "test-systemd: mpush-proxy.service stops after at most $stop s, drain_timeout is $drain s"
