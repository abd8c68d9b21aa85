#!/usr/bin/env bash
# Runs every test of the project: ./scripts/test.sh (CI: .ci/run).
#
# Installs what is missing first (scripts/setup.sh), then runs the steps below in order and
# stops at the first failure, naming it. The last line is "N passed, M failed" (steps).
#
# Lists other crates can join (space-separated crate directories; absent ones are skipped):
#   WASM_CRATES          clippy -D warnings for wasm32-unknown-unknown
#   BROWSER_TEST_CRATES  wasm-pack test --headless --chrome (wasm-bindgen-test in Chromium)
# Environment:
#   NODE_TEST_DIRS       directories whose *.test.mjs run with `node --test`
#   FUZZ_SECONDS         seconds per fuzz target (default 10; 0 builds but does not run)
#   SKIP_SETUP=1         do not run scripts/setup.sh
#   SKIP_DOCKER=1        leave out the container image test (deploy/test-docker.sh)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

WASM_CRATES=${WASM_CRATES:-"protocol client-wasm"}
BROWSER_TEST_CRATES=${BROWSER_TEST_CRATES:-"protocol client-wasm"}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}

export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# wasm-pack test: use Debian's chromedriver (it starts /usr/bin/chromium, flags in
# <crate>/webdriver.json) instead of downloading one.
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
# CI builds once per clone: incremental caches (about 3 GB here) only cost disk there.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

PASSED=0
FAILED=0
TIMINGS=()
START_ALL=$(date +%s)

summary() {
  local total=$(($(date +%s) - START_ALL))
  echo
  echo "---- step timings (s) ----"
  local t
  for t in "${TIMINGS[@]}"; do echo "$t"; done
  echo "total ${total}s"
  echo "$PASSED passed, $FAILED failed"
}

# step NAME COMMAND...: runs one step, timed; on failure prints the summary and exits.
step() {
  local name=$1
  shift
  echo
  echo "==> $name"
  local t0
  t0=$(date +%s)
  if "$@"; then
    PASSED=$((PASSED + 1))
    TIMINGS+=("$(printf '%5d  ok    %s' $(($(date +%s) - t0)) "$name")")
  else
    FAILED=$((FAILED + 1))
    TIMINGS+=("$(printf '%5d  FAIL  %s' $(($(date +%s) - t0)) "$name")")
    echo
    echo "FAILED step: $name" >&2
    summary
    exit 1
  fi
}

skip() { echo "--- skipped: $*"; }

has_npm_script() { [ -f package.json ] && node -e "process.exit(require('./package.json').scripts?.['$1'] ? 0 : 1)"; }

# ---------------------------------------------------------------------------------------
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  step "setup (scripts/setup.sh)" ./scripts/setup.sh
fi

step "cargo fmt --check" cargo fmt --all -- --check
step "clippy (native, all targets)" cargo clippy --workspace --all-targets --locked -- -D warnings

for crate in $WASM_CRATES; do
  if [ -f "$crate/Cargo.toml" ]; then
    step "clippy wasm32 ($crate)" \
      cargo clippy --manifest-path "$crate/Cargo.toml" --target wasm32-unknown-unknown --all-targets --locked -- -D warnings
  else
    skip "clippy wasm32 ($crate): no $crate/"
  fi
done

# The production proxy: clippy without the "demo" feature (the tests build it with the feature)
# and no mpush-gateway among its dependencies.
proxy_without_demo() {
  cargo clippy -p mpush-proxy --lib --bins --locked -- -D warnings || return 1
  if cargo tree -p mpush-proxy -e normal --locked | grep -q mpush-gateway; then
    echo "mpush-proxy links mpush-gateway without the demo feature"
    return 1
  fi
}
step "proxy without the demo feature (clippy, no gateway linked)" proxy_without_demo

# The sans-IO core must build for wasm32 on its own, with no OS randomness backend.
step "protocol builds for wasm32 without getrandom" \
  cargo build -p mpush-protocol --target wasm32-unknown-unknown --lib --locked
# Public items are documented and their docs build without warnings (broken links, bare URLs).
step "cargo doc --workspace (rustdoc -D warnings)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "cargo test --workspace" cargo test --workspace --locked
# mpush-protocol as the browser package builds it (no `compress`, no `server`): its own
# inflater and deflate, and the reference vectors (tests that need ServerSession are skipped).
browser_features() {
  cargo clippy -p mpush-protocol --no-default-features --all-targets --locked -- -D warnings &&
    cargo test -p mpush-protocol --no-default-features --locked
}
step "mpush-protocol with the browser package's features (--no-default-features)" browser_features

for crate in $BROWSER_TEST_CRATES; do
  if [ -f "$crate/Cargo.toml" ]; then
    if [ -x "$crate/tests/live/run.sh" ]; then
      # Live browser tests: the script starts mpush-proxy (embedded gateway) on 127.0.0.1
      # and passes its addresses to the wasm tests.
      step "browser tests in headless Chromium, live ($crate)" "$crate/tests/live/run.sh" --locked
    else
      step "browser tests in headless Chromium ($crate)" wasm-pack test --headless --chrome "$crate" --locked
    fi
  else
    skip "browser tests ($crate): no $crate/"
  fi
done

# Fuzz targets: build all, then run each for FUZZ_SECONDS. cargo-fuzz needs nightly; without
# it, stable rustc accepts the -Z flags under RUSTC_BOOTSTRAP=1.
fuzz() {
  local cargo_fuzz=(cargo +nightly fuzz)
  if ! rustup toolchain list | grep -q '^nightly'; then
    export RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo fuzz)
  fi
  local targets
  targets=$("${cargo_fuzz[@]}" list --fuzz-dir fuzz) || return 1
  [ -n "$targets" ] || { echo "no fuzz targets in fuzz/"; return 1; }
  "${cargo_fuzz[@]}" build --fuzz-dir fuzz || return 1
  [ "$FUZZ_SECONDS" -gt 0 ] || return 0
  local t log
  log=$(mktemp)
  for t in $targets; do
    echo "--- fuzz $t for ${FUZZ_SECONDS}s"
    if "${cargo_fuzz[@]}" run --fuzz-dir fuzz "$t" -- -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
      >"$log" 2>&1; then
      grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units)' "$log" || true
    else
      tail -n 60 "$log"
      echo "fuzz target $t failed (crash input saved under fuzz/artifacts/$t/)"
      return 1
    fi
  done
}
if [ -f fuzz/Cargo.toml ]; then
  step "fuzz targets (build + ${FUZZ_SECONDS}s each)" fuzz
else
  skip "fuzz: no fuzz/"
fi

# Node-driven tests (playwright-core in Debian Chromium, a Vite consumer app, TypeScript
# typings), each only once its directory or npm script exists. They use the npm package, so
# it is built first (`npm run build`), and the debug binaries `cargo test` left in target/.
NODE_TEST_DIRS=${NODE_TEST_DIRS:-"tests/e2e tests/consumer-vite"}
node_tests=()
for dir in $NODE_TEST_DIRS; do
  if compgen -G "$dir/*.test.mjs" >/dev/null; then node_tests+=("$dir"); else skip "node tests: no $dir/*.test.mjs"; fi
done
if [ ${#node_tests[@]} -gt 0 ]; then
  # The node tests start the debug binaries (tests/e2e/stack.mjs: MPUSH_PROXY_BIN).
  # With the proxy's "demo" feature: tests/e2e runs `mpush-proxy --demo`.
  # Not `--features mpush-proxy/demo` on the workspace: the proxy's self dev-dependency makes
  # cargo read that as a feature of the dependency, so the binary came out without the feature.
  build_bins() {
    cargo build --workspace --bins --locked && cargo build -p mpush-proxy --bins --locked --features demo
  }
  step "cargo build --workspace --bins (the proxy with --features demo)" build_bins
  export MPUSH_PROXY_BIN=${MPUSH_PROXY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/mpush-proxy}
fi
if has_npm_script build && { [ ${#node_tests[@]} -gt 0 ] || has_npm_script check:types; }; then
  # The demo console (tests/e2e) imports the packed package from www/vendor.
  build_package() {
    # scripts/npm-pack.sh builds pkg/ itself (scripts/build-wasm.sh --if-stale), as it must
    # on a fresh clone, and packs the staged package; the tarballs below (www/vendor,
    # consumers) come from the same script.
    scripts/npm-pack.sh --dry-run || return 1
    if [ -x scripts/vendor-www.sh ]; then scripts/vendor-www.sh || return 1; fi
  }
  step "npm package (scripts/npm-pack.sh builds pkg/, scripts/vendor-www.sh)" build_package
fi
# One version everywhere, `cargo publish --dry-run` of the three crates, and the exact file
# list of `npm publish --dry-run`.
if [ -x scripts/publish-check.sh ]; then
  step "publish dry runs (scripts/publish-check.sh)" scripts/publish-check.sh
  # Its own target dir (about 1.5 GB) serves no later step.
  if [ "${CI:-}" = true ]; then rm -rf "${CARGO_TARGET_DIR:-$ROOT/target}/publish-check"; fi
fi
if has_npm_script check:types; then
  step "TypeScript consumer typings (npm run check:types)" npm run --silent check:types
fi
for dir in "${node_tests[@]}"; do
  # shellcheck disable=SC2086 # the glob is meant to expand
  step "node --test $dir" node --test $dir/*.test.mjs
done

# Deployment files: the systemd units (systemd-analyze), and the container images built and
# run together when a Docker daemon and the base images are at hand.
if reason=$(deploy/test-systemd.sh --probe 2>&1); then
  step "systemd units (deploy/test-systemd.sh)" deploy/test-systemd.sh
else
  skip "systemd units: $reason"
fi
if [ "${SKIP_DOCKER:-0}" = 1 ]; then
  skip "container images: SKIP_DOCKER=1"
elif reason=$(deploy/test-docker.sh --probe 2>&1); then
  step "container images (deploy/test-docker.sh)" deploy/test-docker.sh
else
  skip "container images (deploy/test-docker.sh): $reason"
fi

# The interop suite against the real MPUSH 0.8.0 (Maven Central jars, ZooKeeper, Redis) and
# mpush-gateway side by side, with the browser package and MPUSH's Java client SDK.
# SKIP_REAL_MPUSH=1 leaves it out (e.g. a machine without Java).
if [ -x tests/real-mpush/run.sh ] && [ "${SKIP_REAL_MPUSH:-0}" != 1 ]; then
  step "real MPUSH interop (tests/real-mpush/run.sh)" tests/real-mpush/run.sh
else
  skip "real MPUSH interop"
fi

summary
