#!/usr/bin/env bash
# Load benchmark: N sessions through mpush-proxy (WebSocket) and directly over TCP to
# mpush-gateway, in the same run. Prints sessions held, heartbeats, push throughput, latency
# percentiles at a fixed rate, and the proxy's memory per idle session.
#
#   ./scripts/bench.sh [SESSIONS]          (default 1000; 10000 needs ~2 min on 2 cores)
#   ./scripts/bench.sh --compare [COUNTS]  the same workload through mpush-proxy, websocat and
#                                          websockify and direct TCP, against one gateway; one
#                                          table. COUNTS: session counts, default "1000 max"
#                                          (max: the most the open-file limit allows).
# Environment: HOLD (s, default 15), BURST (pushes, default 20000), RATE (pushes/s, 1000),
# RATE_SECONDS (5), HEARTBEAT (ms, 10000), PROXIES (proxy processes sharing the sessions
# round-robin; default: 1, or as many as the open-file limit needs), PROXY_ARGS (extra
# mpush-proxy flags, e.g. "--runtime-threads 0" to compare runtimes). Everything listens on
# 127.0.0.1 only.
# --compare also: BRIDGES ("mpush-proxy websocat websockify"), WEBSOCKIFY_MAX (1000: websockify
# forks a ~4 MB Python process per connection, so it gets at most this many sessions),
# WEBSOCKIFY_PER_PROCESS (400: one websockify process fails near 500, select() above fd 1024),
# BENCH_BIN (a directory of prebuilt binaries to use instead of building), BENCH_CACHE
# (~/.cache/mpush-bench: websocat 1.14 via `cargo install`, websockify 0.13 in a
# venv, installed there on first use only).
set -euo pipefail
cd "$(dirname "$0")/.."
COMPARE=0
if [ "${1:-}" = "--compare" ]; then
  COMPARE=1
  shift
fi
N=${1:-1000}
HOLD=${HOLD:-15}
BURST=${BURST:-20000}
RATE=${RATE:-1000}
RATE_SECONDS=${RATE_SECONDS:-5}
HEARTBEAT=${HEARTBEAT:-10000}
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/mpush-bench}
WEBSOCAT="$BENCH_CACHE/websocat/bin/websocat"
WEBSOCKIFY="$BENCH_CACHE/websockify-venv/bin/websockify"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
# Each bridge process holds two descriptors per session (browser + upstream); the gateway and
# the load generator one each. Without CAP_SYS_RESOURCE the hard limit may be lower than one
# bridge needs; the bridges are stateless, so the sessions are then spread over several
# processes, as a deployment would spread them over instances.
per_process() { # sessions one bridge process may hold
  if [ "$FD_LIMIT" = unlimited ]; then echo 1000000000; else echo $(((FD_LIMIT - 200) / 2)); fi
}
check_fds() {
  if [ "$FD_LIMIT" != unlimited ] && [ $(($1 + 200)) -gt "$FD_LIMIT" ]; then
    echo "bench: $1 sessions need $(($1 + 200)) descriptors in the gateway, but ulimit -n is $FD_LIMIT" >&2
    exit 2
  fi
}

install_bridges() {
  mkdir -p "$BENCH_CACHE"
  if [ ! -x "$WEBSOCAT" ]; then
    echo "bench: installing websocat 1.14.0 into $BENCH_CACHE (cargo install; takes minutes)" >&2
    # Not --locked: its lock file pins traitobject 0.1.0, which current rustc rejects.
    cargo install -q websocat --version 1.14.0 --no-default-features --root "$BENCH_CACHE/websocat" >&2
  fi
  if [ ! -x "$WEBSOCKIFY" ]; then
    echo "bench: installing websockify 0.13.0 into a venv in $BENCH_CACHE" >&2
    python3 -m venv "$BENCH_CACHE/websockify-venv"
    "$BENCH_CACHE/websockify-venv/bin/pip" install -q 'websockify==0.13.0' >&2
  fi
}

if [ "$COMPARE" = 1 ]; then
  COUNTS=${*:-1000 max}
  BRIDGES=${BRIDGES:-mpush-proxy websocat websockify}
  case " $BRIDGES " in *" websocat "* | *" websockify "*) install_bridges ;; esac
else
  COUNTS=$N
  BRIDGES=mpush-proxy
  check_fds "$N"
fi
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN # prebuilt mpush-proxy, mpush-gateway and mpush-loadgen (e.g. copies kept aside)
else
  cargo build --release --locked -q -p mpush-proxy -p mpush-gateway -p mpush-loadgen
  BIN=${CARGO_TARGET_DIR:-target}/release # where cargo put them
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "bench failed ($status); last log lines:" >&2
    for f in "$WORK"/*.log; do [ -e "$f" ] && { echo "--- $(basename "$f")" >&2; tail -n 20 "$f" >&2; }; done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
GW_PORT=$(port)
API_PORT=$(port)

# All sessions reach the gateway from 127.0.0.1 (the load generator and the bridges): no
# per-IP caps.
"$BIN/mpush-gateway" --listen "127.0.0.1:$GW_PORT" --api-listen "127.0.0.1:$API_PORT" \
  --key-file "$WORK/key.toml" --min-heartbeat "$HEARTBEAT" --max-heartbeat "$HEARTBEAT" \
  --max-connections-per-ip 0 --max-unauthenticated-per-ip 0 \
  >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 100); do [ -s "$WORK/key.toml" ] && curl -sf "127.0.0.1:$API_PORT/health" >/dev/null && break; sleep 0.1; done
KEY=$(curl -sf "127.0.0.1:$API_PORT/public-key" | python3 -c 'import sys,json; d=sys.stdin.read(); print(json.loads(d)["publicKey"] if d.strip().startswith("{") else d.strip())')
ORIGIN="http://loadgen.invalid"
join() { local IFS=,; echo "$*"; }
rss() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }

# Starts COUNT processes of bridge KIND for N sessions; sets BRIDGE_PIDS and BRIDGE_URLS.
start_bridge() {
  local kind=$1 n=$2 procs=$3 k p
  BRIDGE_PIDS=()
  BRIDGE_URLS=()
  for k in $(seq "$procs"); do
    p=$(port)
    case $kind in
      mpush-proxy)
        "$BIN/mpush-proxy" --listen "127.0.0.1:$p" --upstream "127.0.0.1:$GW_PORT" --allowed-origin "$ORIGIN" \
          --max-connections $((n + 100)) --max-connections-per-ip $((n + 100)) --log-level warn ${PROXY_ARGS:-} \
          >"$WORK/$kind-$k.log" 2>&1 &
        BRIDGE_URLS+=("ws://127.0.0.1:$p/mpush") ;;
      websocat)
        # Binary messages, one TCP connection per WebSocket, EOF passed on both ways.
        "$WEBSOCAT" --binary --exit-on-eof "ws-l:127.0.0.1:$p" "tcp:127.0.0.1:$GW_PORT" >"$WORK/$kind-$k.log" 2>&1 &
        BRIDGE_URLS+=("ws://127.0.0.1:$p/") ;;
      websockify)
        "$WEBSOCKIFY" "127.0.0.1:$p" "127.0.0.1:$GW_PORT" >"$WORK/$kind-$k.log" 2>&1 &
        BRIDGE_URLS+=("ws://127.0.0.1:$p/") ;;
    esac
    BRIDGE_PIDS+=($!)
    PIDS+=($!)
    wait_port "$p" || { echo "bench: $kind did not start" >&2; exit 1; }
  done
}

stop_bridge() {
  local p
  for p in "${BRIDGE_PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${BRIDGE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  sleep 1
}

LOADGEN=(--public-key "$KEY" --api "http://127.0.0.1:$API_PORT" --heartbeat "$HEARTBEAT"
  --hold-seconds "$HOLD" --burst "$BURST" --rate "$RATE" --rate-seconds "$RATE_SECONDS")

if [ "$COMPARE" = 0 ]; then
  PER_PROXY=$(per_process)
  PROXIES=${PROXIES:-$(((N + PER_PROXY - 1) / PER_PROXY))}
  [ "$PROXIES" -ge 1 ] || PROXIES=1
  start_bridge mpush-proxy "$N" "$PROXIES"
  echo "bench: $N sessions, gateway 127.0.0.1:$GW_PORT, $PROXIES proxy process(es): ${BRIDGE_URLS[*]}"
  echo "proxy RSS before: $(rss "${BRIDGE_PIDS[@]}") KB"
  "$BIN/mpush-loadgen" --sessions "$N" "${LOADGEN[@]}" --tcp "127.0.0.1:$GW_PORT" \
    --ws "$(join "${BRIDGE_URLS[@]}")" --origin "$ORIGIN" --proxy-pid "$(join "${BRIDGE_PIDS[@]}")"
  echo "proxy RSS after:  $(rss "${BRIDGE_PIDS[@]}") KB"
  exit 0
fi

# --compare: for each count, direct TCP first, then each bridge on its own, all against the
# same gateway; the load generator prints one RESULT line per run.
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
record() { # count bridge processes attempted < loadgen output
  local out
  out=$(grep '^RESULT ' | sed 's/^RESULT //')
  [ -n "$out" ] || { echo "bench: no result from the $2 run" >&2; exit 1; }
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(count=int(sys.argv[2]), bridge=sys.argv[3], procs=int(sys.argv[4]), attempted=int(sys.argv[5])); print(json.dumps(d))' \
    "$out" "$1" "$2" "$3" "$4" >>"$RESULTS"
}
for count in $COUNTS; do
  if [ "$count" = max ]; then
    if [ "$FD_LIMIT" = unlimited ]; then count=20000; else count=$((FD_LIMIT - 300)); fi
  fi
  check_fds "$count"
  echo "bench: $count sessions: direct TCP" >&2
  "$BIN/mpush-loadgen" --sessions "$count" "${LOADGEN[@]}" --tcp "127.0.0.1:$GW_PORT" --server-pid "$GW_PID" \
    --json 2>"$WORK/loadgen-direct-$count.log" | tee -a "$WORK/loadgen-direct-$count.log" | record "$count" direct 0 "$count"
  for bridge in $BRIDGES; do
    n=$count
    per=$(per_process)
    flags=(--ws-protocol "" --ws-stream --keep-going)
    case $bridge in
      mpush-proxy) flags=(--origin "$ORIGIN") ;;
      websockify)
        n=$((count < ${WEBSOCKIFY_MAX:-1000} ? count : ${WEBSOCKIFY_MAX:-1000}))
        per=${WEBSOCKIFY_PER_PROCESS:-400} ;;
    esac
    procs=$(((n + per - 1) / per))
    start_bridge "$bridge" "$n" "$procs"
    echo "bench: $count sessions: $bridge ($n sessions over $procs process(es))" >&2
    "$BIN/mpush-loadgen" --sessions "$n" "${LOADGEN[@]}" --ws "$(join "${BRIDGE_URLS[@]}")" \
      --proxy-pid "$(join "${BRIDGE_PIDS[@]}")" --label "$bridge" "${flags[@]}" --json \
      2>"$WORK/loadgen-$bridge-$count.log" | tee -a "$WORK/loadgen-$bridge-$count.log" | record "$count" "$bridge" "$procs" "$n"
    stop_bridge
  done
done

python3 - "$RESULTS" "$HOLD" "$BURST" "$RATE" "$RATE_SECONDS" "$(nproc)" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hold, burst, rate, rate_s, cores = sys.argv[2:7]
print(f"bench --compare: burst {burst} pushes, latency at {rate} pushes/s for {rate_s} s, {hold} s idle hold, {cores} cores, 127.0.0.1")
print("KB/idle session: bridge RSS (with child processes) after the hold minus before, per session held;")
print("CPU µs/push: bridge user+system time (all threads and children) per push delivered, over the burst and over")
print("the paced run ('@rate': each push on its own, heartbeats included; a bridge that falls behind in the burst")
print("batches several pushes per system call there). csw/push: the bridge's context switches per push (all threads and")
print("children), burst and '@rate': a count, steady when other work shares the cores, where CPU time is not.")
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
head = f"{'sessions':>8}  {'bridge':<12} {'procs':>5} {'held':>11} {'KB/idle':>8} {'pushes/s':>9} {'vs direct':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/push':>11} {'@rate':>6} {'csw/push':>8} {'@rate':>6}"
print(head)
print("-" * len(head))
for count in sorted({r["count"] for r in rows}):
    group = [r for r in rows if r["count"] == count]
    direct = next((r for r in group if r["bridge"] == "direct"), None)
    base = direct["pushes_per_sec"] if direct else None
    for r in group:
        ratio = r["pushes_per_sec"] / base if base and r["pushes_per_sec"] else None
        held = f"{r['sessions']}/{r['attempted']}"
        kb = None if r["bridge"] == "direct" else r["kb_per_session"]
        cpu = None if r["bridge"] == "direct" else r["cpu_us_per_push"]
        cpu_rate = None if r["bridge"] == "direct" else r.get("cpu_us_per_push_at_rate")
        csw = None if r["bridge"] == "direct" else r.get("switches_per_push")
        csw_rate = None if r["bridge"] == "direct" else r.get("switches_per_push_at_rate")
        name = "direct TCP" if r["bridge"] == "direct" else r["bridge"]
        procs = "-" if r["bridge"] == "direct" else r["procs"]
        print(f"{count:>8}  {name:<12} {procs:>5} {held:>11} {f(kb, '.1f'):>8} {f(r['pushes_per_sec'], '.0f'):>9} {f(ratio, '.2f'):>9} "
              f"{f(r['p50_ms'], '.3f'):>7} {f(r['p99_ms'], '.3f'):>7} {f(cpu, '.1f'):>11} {f(cpu_rate, '.1f'):>6} "
              f"{f(csw, '.2f'):>8} {f(csw_rate, '.2f'):>6}")
        if r["attempted"] < count:
            print(f"{'':>10}({name} given {r['attempted']} of the {count} sessions: WEBSOCKIFY_MAX)")
        if r.get("framing_violations"):
            print(f"{'':>10}({r['framing_violations']} messages were not exactly one packet)")
    proxy = next((r for r in group if r["bridge"] == "mpush-proxy"), None)
    wsc = next((r for r in group if r["bridge"] == "websocat"), None)
    if proxy and wsc and proxy["kb_per_session"] and proxy["cpu_us_per_push"] and wsc["kb_per_session"] and wsc["cpu_us_per_push"]:
        at_rate = ""
        if proxy.get("cpu_us_per_push_at_rate") and wsc.get("cpu_us_per_push_at_rate"):
            at_rate = f" ({wsc['cpu_us_per_push_at_rate'] / proxy['cpu_us_per_push_at_rate']:.2f}x at the fixed rate)"
        print(f"{'':>10}mpush-proxy vs websocat: {wsc['kb_per_session'] / proxy['kb_per_session']:.1f}x less memory per idle session, "
              f"{wsc['cpu_us_per_push'] / proxy['cpu_us_per_push']:.2f}x less CPU per push in the burst{at_rate}")
EOF
