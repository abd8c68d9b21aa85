#!/usr/bin/env bash
# Installs everything `scripts/test.sh` (and the demo) needs on a Debian 12 machine with access
# to crates.io, npm, PyPI and Debian only. Idempotent: every step checks first and prints one
# line, so a second run takes a few seconds.
#
# Tools that usually download their own binaries are replaced (see shared/TOOLCHAIN.md):
#   wasm-bindgen CLI  -> `cargo install wasm-bindgen-cli` at exactly the version in Cargo.lock
#   browser/driver    -> Debian's chromium + chromium-driver
#   wasm-opt          -> npm `binaryen` (devDependency, node_modules/.bin on PATH)
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'setup: %-22s %s\n' "$1" "$2"; }
die() { echo "setup: FAILED: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

command -v cargo >/dev/null || die "cargo not found (install Rust with rustup first)"
command -v rustup >/dev/null || die "rustup not found"

# --- Rust targets and components -------------------------------------------------------
installed_targets=$(rustup target list --installed)
if grep -qx wasm32-unknown-unknown <<<"$installed_targets"; then
  say "wasm32 target" "present"
else
  say "wasm32 target" "installing"
  rustup target add wasm32-unknown-unknown
fi

installed_components=$(rustup component list --installed)
missing=()
for c in rustfmt clippy; do
  grep -q "^$c" <<<"$installed_components" || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "rustfmt, clippy" "present"
else
  say "rustfmt, clippy" "installing ${missing[*]}"
  rustup component add "${missing[@]}"
fi

# rust-src lets scripts/build-wasm.sh rebuild std for wasm32 with panic=immediate-abort
# (RUSTC_BOOTSTRAP=1 -Z build-std on this stable toolchain): without it the package is over
# its 80 KB size budget.
if grep -q '^rust-src' <<<"$installed_components"; then
  say "rust-src" "present"
else
  say "rust-src" "installing"
  rustup component add rust-src
fi

# --- wasm-pack -----------------------------------------------------------------------
if command -v wasm-pack >/dev/null; then
  say "wasm-pack" "present ($(wasm-pack --version | awk '{print $2}'))"
else
  say "wasm-pack" "installing (cargo install, ~3 min)"
  cargo install wasm-pack --locked
fi

# --- wasm-bindgen CLI, pinned to the wasm-bindgen crate in Cargo.lock -----------------
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock 2>/dev/null || true)
WBG_VERSION=${WBG_VERSION:-0.2.130}
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$WBG_VERSION" ] &&
  command -v wasm-bindgen-test-runner >/dev/null; then
  say "wasm-bindgen-cli" "present ($WBG_VERSION)"
else
  say "wasm-bindgen-cli" "installing $WBG_VERSION (cargo install, ~4 min)"
  # The CLI's own Cargo.lock can name a dependency release the registry index here does not
  # have (seen: webpki-roots 1.0.11 for 0.2.130); then resolve afresh instead of --locked.
  cargo install wasm-bindgen-cli --version "=$WBG_VERSION" --locked --force ||
    cargo install wasm-bindgen-cli --version "=$WBG_VERSION" --force
fi

# --- cargo-fuzz (runs on nightly; falls back to RUSTC_BOOTSTRAP=1 on stable) -----------
if rustup toolchain list | grep -q '^nightly'; then
  say "nightly toolchain" "present"
elif rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
  say "nightly toolchain" "installed"
else
  say "nightly toolchain" "unavailable; fuzzing will use stable with RUSTC_BOOTSTRAP=1"
fi
if command -v cargo-fuzz >/dev/null; then
  say "cargo-fuzz" "present"
else
  say "cargo-fuzz" "installing (cargo install, ~1 min)"
  cargo install cargo-fuzz --locked
fi

# --- Chromium + ChromeDriver from Debian ----------------------------------------------
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  say "chromium" "present ($(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'))"
else
  say "chromium" "installing from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the package lists when the install cannot find the packages.
  $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q chromium chromium-driver >/dev/null
  }
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || die "chromium/chromedriver not installed"
fi

# --- Java side of the real-MPUSH interop suite (tests/real-mpush) ------------------------
# OpenJDK 17 and Maven come with the machine; MPUSH 0.8.0's jars come from Maven Central
# (tests/real-mpush/build.sh). Redis for MPUSH's sessions and routes comes from Debian.
command -v java >/dev/null || die "java not found: tests/real-mpush needs OpenJDK 17 (apt-get install openjdk-17-jdk-headless)"
command -v javac >/dev/null || die "javac not found: tests/real-mpush needs a JDK, not only a JRE (openjdk-17-jdk-headless)"
command -v mvn >/dev/null || die "mvn not found: tests/real-mpush needs Maven 3 (apt-get install maven)"
say "java, maven" "present ($(java -version 2>&1 | awk -F'"' '/version/ { print $2; exit }'), $(mvn -B -v 2>/dev/null | awk '/Apache Maven/ { print $3; exit }'))"
if command -v redis-server >/dev/null; then
  say "redis-server" "present ($(redis-server --version | awk '{ print $3 }' | sed 's/^v=//'))"
else
  say "redis-server" "installing from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt/dpkg run (e.g. a package install already under way) instead of failing.
  apt_install() { $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null 2>&1; }
  apt_install redis-server || {
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt_install redis-server
  }
  command -v redis-server >/dev/null || die "redis-server not installed"
fi

# --- npm dev tooling at the repository root (binaryen, playwright-core, ...) ----------
if [ -f package.json ]; then
  command -v npm >/dev/null || die "npm not found"
  stamp=node_modules/.package-lock.json
  if [ -d node_modules ] && [ -f "$stamp" ] && [ ! package.json -nt "$stamp" ] &&
    { [ ! -f package-lock.json ] || [ ! package-lock.json -nt "$stamp" ]; }; then
    say "npm packages" "present"
  elif [ -f package-lock.json ]; then
    say "npm packages" "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  else
    say "npm packages" "npm install"
    npm install --no-audit --no-fund --loglevel=error
  fi
else
  say "npm packages" "no package.json, skipped"
fi
