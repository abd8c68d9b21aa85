# mpush-proxy container image: the WebSocket <-> TCP bridge, run next to the MPUSH servers.
#
# Build from the repository root (the context is the Cargo workspace; see .dockerignore):
#   docker build -f deploy/proxy.Dockerfile -t mpush-proxy .
# Run with your config and TLS files mounted read-only (README.md, "Deployment"):
#   docker run -d --name mpush-proxy --restart unless-stopped -p 443:8443 \
#     -v /etc/mpush-proxy/mpush-proxy.toml:/etc/mpush-proxy/mpush-proxy.toml:ro \
#     -v /etc/mpush-proxy/tls:/etc/mpush-proxy/tls:ro \
#     mpush-proxy
# Flags after the image name are passed to mpush-proxy (--help lists them); MPUSH_PROXY_*
# variables override the file (-e MPUSH_PROXY_UPSTREAMS=10.0.0.5:3000,10.0.0.6:3000).
#
# The binary is built without the cargo feature "demo": no mpush-gateway inside, and
# `--demo` refuses to start (the demo is scripts/demo.sh, not an image).
#
# Plain Dockerfile syntax only (no BuildKit-only features): the classic builder and BuildKit
# both build it, and no frontend image has to be pulled.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build stage: the same in deploy/gateway.Dockerfile, so the second image reuses it ------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Dependencies first, compiled against stub sources: this layer is cached until a manifest or
# Cargo.lock changes. Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY protocol/Cargo.toml protocol/
COPY client-wasm/Cargo.toml client-wasm/
COPY gateway/Cargo.toml gateway/
COPY proxy/Cargo.toml proxy/
COPY native-client/Cargo.toml native-client/
COPY loadgen/Cargo.toml loadgen/
RUN for d in protocol client-wasm gateway proxy native-client loadgen; do \
      mkdir -p "$d/src" && : > "$d/src/lib.rs" && echo 'fn main() {}' > "$d/src/main.rs"; \
    done \
 && cargo build --release --locked -p mpush-proxy -p mpush-gateway \
 && rm -rf protocol/src client-wasm/src gateway/src proxy/src native-client/src loadgen/src
COPY . .
# COPY keeps the sources' old modification times, which cargo would take as "older than the
# stub build": touch them so the real crates are rebuilt.
RUN find protocol gateway proxy -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p mpush-proxy -p mpush-gateway \
 && mkdir -p /out \
 && cp target/release/mpush-proxy target/release/mpush-gateway /out/

# ---- runtime stage -------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
# curl is only for the HEALTHCHECK. The proxy needs no CA bundle: it dials its upstreams over
# plain TCP and only serves TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mpush \
 && useradd --system --uid 10001 --gid mpush --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin mpush
COPY --from=build /out/mpush-proxy /usr/local/bin/mpush-proxy
COPY deploy/mpush-proxy.toml /etc/mpush-proxy/mpush-proxy.toml
COPY LICENSE /usr/share/doc/mpush-proxy/LICENSE
# The file's listen (0.0.0.0:443) needs a privilege the container does not get: listen on 8443
# and publish it as 443. The HEALTHCHECK reads the port from here too. /metrics and /readyz
# answer on 9090 (the file's ops_listen is 127.0.0.1, unreachable from outside the container):
# scrape it over the container network, do not publish it.
ENV MPUSH_PROXY_CONFIG=/etc/mpush-proxy/mpush-proxy.toml \
    MPUSH_PROXY_LISTEN=0.0.0.0:8443 \
    MPUSH_PROXY_OPS_LISTEN=0.0.0.0:9090
# Numeric, so that "runAsNonRoot" checks (Kubernetes) can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 8443 9090
# Liveness only (/readyz also needs an upstream: use it for load-balancer readiness). HTTPS
# with the certificate unchecked (it names the public host, not 127.0.0.1), else plain HTTP
# when TLS is terminated in front.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD port="${MPUSH_PROXY_LISTEN##*:}"; \
      curl -fsS -o /dev/null --max-time 2 -k "https://127.0.0.1:$port/healthz" \
      || curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz"
# SIGTERM (docker stop's default) drains: no new sessions, open ones get drain_timeout (10 s)
# before 1001. Give `docker stop` longer than that: docker stop -t 20 / stop_grace_period: 20s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mpush-proxy"]
