# mpush-gateway container image: the MPUSH-compatible connection server with its push API.
#
# Build from the repository root (the context is the Cargo workspace; see .dockerignore):
#   docker build -f deploy/gateway.Dockerfile -t mpush-gateway .
# Run with the production key pair and API token from an env file (mode 0600), the config
# mounted read-only (README.md, "Deployment"):
#   docker run -d --name mpush-gateway --restart unless-stopped -p 3000:3000 \
#     --env-file /etc/mpush-gateway/mpush-gateway.env \
#     -v /etc/mpush-gateway/mpush-gateway.toml:/etc/mpush-gateway/mpush-gateway.toml:ro \
#     mpush-gateway
# with MPUSH_GATEWAY_PRIVATE_KEY, MPUSH_GATEWAY_PUBLIC_KEY and MPUSH_GATEWAY_API_TOKEN in the
# env file. Without keys it runs in dev mode and keeps a generated pair in
# /var/lib/mpush-gateway (mount a volume there to keep it across containers).
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
# curl is only for the HEALTHCHECK. No CA bundle: the HTTP tunnel and the webhook speak plain
# http:// to internal hosts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mpush \
 && useradd --system --uid 10001 --gid mpush --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin mpush \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/mpush-gateway
COPY --from=build /out/mpush-gateway /usr/local/bin/mpush-gateway
COPY deploy/mpush-gateway.toml /etc/mpush-gateway/mpush-gateway.toml
COPY LICENSE /usr/share/doc/mpush-gateway/LICENSE
# The push API must be reachable from other containers here, so it leaves loopback: set
# MPUSH_GATEWAY_API_TOKEN, and publish 8081 only on a private interface if at all.
ENV MPUSH_GATEWAY_API_LISTEN=0.0.0.0:8081
# The dev-mode key file (key-file in the config) is relative to this directory.
WORKDIR /var/lib/mpush-gateway
# Numeric, so that "runAsNonRoot" checks (Kubernetes) can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 3000 8081
# The push API's /health (no token needed) on the port set above.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:${MPUSH_GATEWAY_API_LISTEN##*:}/health"
# docker stop's SIGTERM: mpush-gateway closes its connections and exits 0 (gateway/tests/sigterm.rs).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mpush-gateway"]
CMD ["--config", "/etc/mpush-gateway/mpush-gateway.toml"]
