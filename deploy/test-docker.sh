#!/usr/bin/env bash
# Builds the container images from deploy/gateway.Dockerfile and deploy/proxy.Dockerfile and
# runs them together as deploy/ describes: the gateway with a production key pair and API
# token from the environment, the proxy with the production config, a TLS certificate mounted
# read-only and the gateway as its upstream on a private network. Checks, from the host:
# both HEALTHCHECKs turn "healthy"; /healthz, /readyz (proxy -> gateway by name), /metrics
# over HTTPS; the WebSocket upgrade for an allowed and a refused origin; the push API's key,
# token and health; non-root users; JSON logs; and that `docker stop` ends both gracefully
# (exit 0, well before the kill timeout).
#
# Usage: deploy/test-docker.sh           build, run, check; ends with the images' sizes
#        deploy/test-docker.sh --probe   exit 0 when Docker can run this test here, else print
#                                        why not and exit 1 (scripts/test.sh then skips it)
# Environment: MPUSH_DOCKER_TAG (image tag, default "test").
set -euo pipefail
cd "$(dirname "$0")/.."

RUST_VERSION=$(sed -n 's/^ARG RUST_VERSION=//p' deploy/proxy.Dockerfile)
DEBIAN_RELEASE=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' deploy/proxy.Dockerfile)
BASE_IMAGES=("rust:$RUST_VERSION-slim-$DEBIAN_RELEASE" "debian:$DEBIAN_RELEASE-slim")

probe() {
  command -v docker >/dev/null || { echo "docker is not installed"; return 1; }
  local err
  if ! err=$(docker info 2>&1 >/dev/null); then
    echo "the Docker daemon is not reachable: $(grep -m1 -i 'cannot\|error' <<<"$err" || echo "docker info failed")"
    return 1
  fi
  local img
  for img in "${BASE_IMAGES[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 && continue
    timeout 120 docker pull -q "$img" >/dev/null 2>&1 && continue
    echo "base image $img is not present and cannot be pulled (no registry access?)"
    return 1
  done
}

if [ "${1:-}" = "--probe" ]; then
  probe
  exit
fi
if ! reason=$(probe); then
  echo "test-docker: cannot run: $reason" >&2
  exit 1
fi

# The docker CLI builds with BuildKit through the buildx plugin; without the plugin, use the
# classic builder (the Dockerfiles need nothing else).
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

TAG=${MPUSH_DOCKER_TAG:-test}
GW_IMAGE=mpush-gateway:$TAG
PX_IMAGE=mpush-proxy:$TAG
NAME=mpush-test-$$
TMP=$(mktemp -d)
cleanup() {
  docker rm -f "$NAME-proxy" "$NAME-gateway" >/dev/null 2>&1 || true
  docker network rm "$NAME" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

say() { echo "test-docker: $*"; }
fail() {
  echo "test-docker: FAILED: $*" >&2
  for c in "$NAME-gateway" "$NAME-proxy"; do
    echo "--- docker logs $c (last 20 lines)" >&2
    docker logs --tail 20 "$c" >&2 2>&1 || true
  done
  exit 1
}
elapsed() { echo $(($(date +%s) - $1)); }

# --- build -------------------------------------------------------------------------------
for pair in "gateway:$GW_IMAGE" "proxy:$PX_IMAGE"; do
  t0=$(date +%s)
  docker build -q -f "deploy/${pair%%:*}.Dockerfile" -t "${pair#*:}" . >/dev/null ||
    fail "docker build -f deploy/${pair%%:*}.Dockerfile"
  say "built ${pair#*:} in $(elapsed "$t0") s"
done

for img in "$GW_IMAGE" "$PX_IMAGE"; do
  user=$(docker image inspect -f '{{.Config.User}}' "$img")
  case $user in "" | 0 | 0:* | root | root:*) fail "$img runs as root (USER '$user')" ;; esac
  health=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$img")
  case $img in
    "$PX_IMAGE") grep -q '/healthz' <<<"$health" || fail "$img: HEALTHCHECK does not probe /healthz: $health" ;;
    *) grep -q '/health\b' <<<"$health" || fail "$img: HEALTHCHECK does not probe /health: $health" ;;
  esac
done
say "images run as non-root users and declare HEALTHCHECKs"

# --- secrets and certificates, as an operator would provide them ------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$TMP/rsa.pem" 2>/dev/null
PRIVATE_KEY=$(openssl pkcs8 -topk8 -nocrypt -in "$TMP/rsa.pem" -outform DER | base64 -w0)
PUBLIC_KEY=$(openssl pkey -in "$TMP/rsa.pem" -pubout -outform DER | base64 -w0)
TOKEN="token-$RANDOM$RANDOM"
mkdir -p "$TMP/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$TMP/tls/privkey.pem" -out "$TMP/tls/fullchain.pem" 2>/dev/null
# The container user (uid 10001) must read the mounted key; on a real host give it that
# uid's ownership (or group) with mode 0640 instead.
chmod 0755 "$TMP/tls" && chmod 0644 "$TMP/tls/"*.pem

# --- run ---------------------------------------------------------------------------------
docker network create "$NAME" >/dev/null
# --health-interval: check every second instead of every 30 s, so "healthy" comes quickly.
docker run -d --name "$NAME-gateway" --network "$NAME" --network-alias mpush-gateway \
  --health-interval 1s -p 127.0.0.1::8081 \
  -e MPUSH_GATEWAY_PRIVATE_KEY="$PRIVATE_KEY" -e MPUSH_GATEWAY_PUBLIC_KEY="$PUBLIC_KEY" \
  -e MPUSH_GATEWAY_API_TOKEN="$TOKEN" "$GW_IMAGE" >/dev/null
docker run -d --name "$NAME-proxy" --network "$NAME" --health-interval 1s -p 127.0.0.1::8443 \
  -e MPUSH_PROXY_UPSTREAMS=mpush-gateway:3000 -e MPUSH_PROXY_ALLOWED_ORIGINS=https://app.example.test \
  -v "$TMP/tls:/etc/mpush-proxy/tls:ro" "$PX_IMAGE" >/dev/null

wait_healthy() {
  local c=$1 status i
  for i in $(seq 120); do
    status=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$c")
    case $status in
      "running healthy") return 0 ;;
      "running unhealthy") fail "$c became unhealthy" ;;
      running*) sleep 0.5 ;;
      *) fail "$c is $status" ;;
    esac
  done
  fail "$c not healthy after 60 s ($status)"
}
t0=$(date +%s)
wait_healthy "$NAME-gateway"
wait_healthy "$NAME-proxy"
say "both containers healthy after $(elapsed "$t0") s"

PX=$(docker port "$NAME-proxy" 8443/tcp | head -n 1)
GW=$(docker port "$NAME-gateway" 8081/tcp | head -n 1)

# --- proxy ---------------------------------------------------------------------------------
[ "$(curl -fsSk "https://$PX/healthz")" = ok ] || fail "/healthz over HTTPS"
# /readyz and /metrics on the ops listener (MPUSH_PROXY_OPS_LISTEN=0.0.0.0:9090), not the public port.
ops() { docker exec "$NAME-proxy" curl -fsS "http://127.0.0.1:9090$1"; }
ops /readyz | head -n 1 | grep -qx ready || fail "/readyz: the proxy does not reach mpush-gateway:3000"
ops /metrics | grep -q '^mpush_proxy_connections' || fail "/metrics has no mpush_proxy_connections"
for path in /metrics /readyz; do
  code=$(curl -sk -o /dev/null -w '%{http_code}' "https://$PX$path")
  [ "$code" = 404 ] || fail "$path is served on the public port ($code)"
done
# The production image has no demo gateway.
out=$(docker run --rm "$PX_IMAGE" --demo 2>&1) && fail "--demo started in the production image"
grep -q 'built without the "demo" feature' <<<"$out" || fail "--demo in the production image: $out"
upgrade() {
  curl -sk -o /dev/null -w '%{http_code}' --max-time 3 "https://$PX/mpush" --http1.1 \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Protocol: mpush' -H "Origin: $1" || true
}
[ "$(upgrade https://app.example.test)" = 101 ] || fail "WebSocket upgrade from the allowed origin"
[ "$(upgrade https://evil.example.test)" = 403 ] || fail "WebSocket upgrade from another origin is not refused"
[ "$(docker exec "$NAME-proxy" id -u)" = 10001 ] || fail "the proxy process is not uid 10001"
docker logs "$NAME-proxy" 2>&1 | grep -q '^{' || fail "the proxy does not log JSON (log_format = \"json\")"
say "proxy: TLS, /healthz, /readyz and /metrics on the ops port only, origin allowlist, no --demo, uid 10001, JSON logs"

# --- gateway -------------------------------------------------------------------------------
curl -fsS "http://$GW/health" | grep -q '"status":"ok"' || fail "gateway /health"
[ "$(curl -fsS "http://$GW/public-key")" = "$PUBLIC_KEY" ] || fail "the gateway does not use the key pair from its environment"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$GW/push" -H 'content-type: application/json' \
  -d '{"userId":"nobody","content":"x"}')
[ "$code" = 401 ] || fail "POST /push without the token answered $code, not 401"
curl -fsS "http://$GW/push" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"userId":"nobody","content":"x"}' | grep -q '"offline"' || fail "POST /push with the token"
[ "$(docker exec "$NAME-gateway" id -u)" = 10001 ] || fail "the gateway process is not uid 10001"
say "gateway: keys from the environment, push API token, /health, uid 10001"

# --- graceful stop -------------------------------------------------------------------------
for c in "$NAME-proxy" "$NAME-gateway"; do
  t0=$(date +%s)
  docker stop -t 30 "$c" >/dev/null
  took=$(elapsed "$t0")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  [ "$code" = 0 ] || fail "$c exited with $code after docker stop"
  [ "$took" -lt 20 ] || fail "$c took $took s to stop (the stop signal was ignored?)"
  say "$c: docker stop -> exit 0 in $took s"
done

for img in "${BASE_IMAGES[1]}" "$GW_IMAGE" "$PX_IMAGE"; do
  say "image $img: $(($(docker image inspect -f '{{.Size}}' "$img") / 1000000)) MB"
done
say "passed"
