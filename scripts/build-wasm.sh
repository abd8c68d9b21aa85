#!/usr/bin/env bash
# Builds the npm package "mpush-client-wasm" into pkg/: cargo (the `wasm-release` profile:
# opt-level z, LTO, panic=abort; the aes crate's `aes_compact` fixslice, about 2.3 KB smaller),
# wasm-bindgen --target web, wasm-opt -Oz with a flatten/rereloop pass from the npm
# `binaryen` devDependency, then the package entry pkg/index.js; the JS minified
# (scripts/minify-js.mjs). Prints the gzipped size of wasm + JS glue and fails above the
# budget (80 KB; MPUSH_WASM_ENFORCE_BUDGET=0: only warn).
#
# Usage: scripts/build-wasm.sh [--dev] [--if-stale]
#   --dev       debug build, no wasm-opt, no budget
#   --if-stale  do nothing when pkg/ holds a release build newer than every input
#               (scripts/npm-pack.sh uses it, so packing after a build does not build again);
#               MPUSH_WASM_REBUILD=1 builds anyway
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
BUDGET=${MPUSH_WASM_BUDGET:-81920}

DEV=0
WASM_IN=""
IF_STALE=0
for arg in "$@"; do
  case $arg in
    --dev) DEV=1 ;;
    --if-stale) IF_STALE=1 ;;
    *) echo "build-wasm: unknown argument $arg (usage: scripts/build-wasm.sh [--dev] [--if-stale])" >&2; exit 2 ;;
  esac
done

# pkg/.build-stamp is written after a successful release build: "release <rustc version>".
# The inputs are everything that can change the package's bytes.
STAMP=pkg/.build-stamp
STAMP_TEXT="release $(rustc --version)"
if [ "$IF_STALE" = 1 ] && [ "$DEV" = 0 ] && [ "${MPUSH_WASM_REBUILD:-0}" != 1 ] && [ -f "$STAMP" ] &&
  [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] &&
  [ -f pkg/index.js ] && [ -f pkg/shared.js ] && [ -f pkg/mpush_client_wasm.js ] && [ -f pkg/mpush_client_wasm_bg.wasm ]; then
  inputs=(Cargo.toml Cargo.lock protocol/Cargo.toml protocol/src client-wasm/Cargo.toml client-wasm/src
    client-wasm/js scripts/build-wasm.sh scripts/minify-js.mjs)
  [ -e .cargo/config.toml ] && inputs+=(.cargo/config.toml)
  newer=$(find "${inputs[@]}" -newer "$STAMP" -print -quit)
  if [ -z "$newer" ]; then
    echo "build-wasm: pkg/ is up to date (MPUSH_WASM_REBUILD=1 to build anyway)" >&2
    exit 0
  fi
  echo "build-wasm: $newer changed since the last build of pkg/" >&2
fi
# The stamp takes the time the build started: an input edited during the build is newer.
BUILD_START=$(mktemp)
# The aes crate's compact fixslice: ~2.3 KB less wasm for a slower block (still well over
# the browser benchmark's push rate, scripts/bench-browser.sh).
RUSTFLAGS_SIZE="--cfg aes_compact"
# Only where std is rebuilt with the same flags (a prebuilt std has them on, and wasm-bindgen
# then expects the externref table): without reference types, wasm-bindgen keeps JS objects in
# a JS-side slab instead of an externref table and each export loses its externref shim
# (~0.9 KB gzipped net); without multivalue, (pointer, length) results come back through
# memory (~0.1 KB less).
RUSTFLAGS_BUILD_STD="-Ctarget-feature=-reference-types,-multivalue"
trap 'rm -f "$BUILD_START"' EXIT

if ! command -v wasm-opt >/dev/null && [ "$DEV" = 0 ]; then
  echo "build-wasm: installing npm devDependencies (wasm-opt from binaryen)"
  npm install --no-audit --no-fund
fi

rm -rf pkg
# `cargo rustc --crate-type cdylib` instead of `wasm-pack build`: the crate is also an rlib
# (for its wasm-bindgen tests), and cargo skips LTO for rlib+cdylib builds, which costs ~20%
# of the binary. wasm-bindgen is the CLI pinned to the crate's version (scripts/setup.sh).
if [ "$DEV" = 1 ]; then
  cargo rustc -p mpush-client-wasm --lib --target wasm32-unknown-unknown --crate-type cdylib
  WASM_IN=target/wasm32-unknown-unknown/debug/mpush_client_wasm.wasm
  TOOLCHAIN="$(rustc --version | awk '{print $2}'), dev"
else
  # When the toolchain in use has rust-src (scripts/setup.sh installs it), std is rebuilt with
  # panic=immediate-abort, which drops panic messages, locations and most formatting code
  # (~12% smaller gzipped). These are unstable cargo/rustc flags: RUSTC_BOOTSTRAP=1 lets the
  # stable toolchain take them (no nightly needed). Rust >= 1.91 spells it
  # `-Zunstable-options -Cpanic=immediate-abort`; older releases had the std feature
  # `-Zbuild-std-features=panic_immediate_abort` instead (not supported here).
  # MPUSH_WASM_BUILD_STD=0 forces the plain build (larger: over the budget).
  TOOLCHAIN="$(rustc --version | awk '{print $2}'), prebuilt std"
  SYSROOT=$(rustc --print sysroot)
  if [ "${MPUSH_WASM_BUILD_STD:-1}" != 0 ] && [ -f "$SYSROOT/lib/rustlib/src/rust/library/std/Cargo.toml" ]; then
    if RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/wasm-min RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort $RUSTFLAGS_SIZE $RUSTFLAGS_BUILD_STD" \
      cargo rustc -p mpush-client-wasm --lib --target wasm32-unknown-unknown --crate-type cdylib \
      --profile wasm-release -Z build-std=std,panic_abort; then
      TOOLCHAIN="$(rustc --version | awk '{print $2}'), build-std, panic=immediate-abort"
      WASM_IN=target/wasm-min/wasm32-unknown-unknown/wasm-release/mpush_client_wasm.wasm
    else
      echo "build-wasm: the build-std build failed; building with the prebuilt std" >&2
    fi
  elif [ "${MPUSH_WASM_BUILD_STD:-1}" != 0 ]; then
    echo "build-wasm: rust-src is not installed for $(rustc --version); building with the prebuilt std" \
      "(larger; run scripts/setup.sh or: rustup component add rust-src)" >&2
  fi
  if [ -z "$WASM_IN" ]; then
    RUSTFLAGS="$RUSTFLAGS_SIZE" cargo rustc -p mpush-client-wasm --lib --target wasm32-unknown-unknown \
      --crate-type cdylib --profile wasm-release
    WASM_IN=target/wasm32-unknown-unknown/wasm-release/mpush_client_wasm.wasm
  fi
fi
# --encode-into always: strings go to wasm with TextEncoder.encodeInto (Chrome 74, Firefox
# 66, Safari 14.1, Node 12), without the fallback through TextEncoder.encode.
wasm-bindgen "$WASM_IN" --out-dir pkg --out-name mpush_client_wasm --target web --encode-into always
if [ "$DEV" = 0 ]; then
  # flatten + rereloop before the -Oz passes: ~0.5 KB smaller gzipped than -Oz alone.
  # --low-memory-unused: the stack comes first in the module's memory (rust-lld's layout), so
  # the lowest 1 KB is only reached by a 1 MB-deep stack; constant offsets then fold into
  # loads and stores (~0.2 KB gzipped). The target_features section is for tools (wasm-bindgen
  # has read it); engines ignore it.
  wasm-opt -Oz --flatten --rereloop -Oz -Oz --converge --low-memory-unused --strip-debug --strip-producers \
    --strip-target-features \
    pkg/mpush_client_wasm_bg.wasm -o pkg/mpush_client_wasm_bg.opt.wasm
  mv pkg/mpush_client_wasm_bg.opt.wasm pkg/mpush_client_wasm_bg.wasm
fi

# The package entry and the JS modules beside it (shared.js: the MPushClient facade), without
# their comment-only lines: ~3 KB of the gzipped budget. The sources keep them, index.d.ts
# documents the API. (So no multi-line string in client-wasm/js may hold a line starting with
# "//" or "/**"; node --check catches what would break the syntax.)
for f in client-wasm/js/*.js; do
  sed -E -e '/^\s*\/\/.*$/d' -e '/^\s*\/\*\*.*\*\/\s*$/d' -e '/^\s*\/\*\*$/,/^\s*\*\/$/d' "$f" >"pkg/${f##*/}"
  node --check "pkg/${f##*/}"
done
# The package ships the hand-checked index.d.ts at the root instead of the generated typings.
rm -f pkg/*.d.ts
# Minified JS (scripts/minify-js.mjs, Oxc via the rolldown devDependency): ~7 KB less gzipped.
# MPUSH_WASM_MINIFY=0 ships the JS as written.
if [ "$DEV" = 0 ] && [ "${MPUSH_WASM_MINIFY:-1}" != 0 ]; then
  node scripts/minify-js.mjs pkg/*.js
fi

gz() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
WASM=$(gz pkg/mpush_client_wasm_bg.wasm)
JS=0
for f in pkg/*.js; do JS=$((JS + $(gz "$f"))); done
TOTAL=$((WASM + JS))
RAW=$(wc -c <pkg/mpush_client_wasm_bg.wasm | tr -d ' ')
echo "build-wasm: toolchain $TOOLCHAIN"
echo "wasm: $RAW bytes raw, $WASM bytes gzipped; JS glue: $JS bytes gzipped"
echo "gzipped size: $TOTAL bytes (budget $BUDGET)"
if [ "$DEV" = 0 ] && [ "$TOTAL" -gt "$BUDGET" ]; then
  # A hard requirement: fatal by default; MPUSH_WASM_ENFORCE_BUDGET=0 only warns.
  if [ "${MPUSH_WASM_ENFORCE_BUDGET:-1}" = 0 ]; then
    echo "build-wasm: WARNING: over the size budget by $((TOTAL - BUDGET)) bytes gzipped" >&2
  else
    echo "build-wasm: FAILED: over the size budget by $((TOTAL - BUDGET)) bytes gzipped" \
      "(MPUSH_WASM_ENFORCE_BUDGET=0 to only warn)" >&2
    exit 1
  fi
fi
if [ "$DEV" = 0 ]; then
  echo "$STAMP_TEXT" >"$STAMP"
  touch -r "$BUILD_START" "$STAMP"
fi
exit 0
