#!/usr/bin/env bash
# Packs the npm package "mpush-client-wasm" from a staging directory, the only way it is packed
# or published. npm always ships the README.md of the directory it packs, and the repository
# root's README.md is the project's, not the client's: so the package is assembled in
# target/npm-package (CARGO_TARGET_DIR honoured) with client-wasm/README.md as its README.md,
# the files package.json lists, and package.json itself without the repository's scripts and
# devDependencies (and without "private", which keeps the root from being published by mistake).
#
# Usage: scripts/npm-pack.sh [npm pack arguments...]   e.g. --dry-run, --pack-destination DIR
#        scripts/npm-pack.sh --stage                   only stage; prints the directory
# Builds pkg/ first when stale (scripts/build-wasm.sh --if-stale). Publishing:
#   npm publish "$(scripts/npm-pack.sh --stage)"
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
STAGE=${CARGO_TARGET_DIR:-$ROOT/target}/npm-package

scripts/build-wasm.sh --if-stale >&2

rm -rf "$STAGE"
mkdir -p "$STAGE"
# package.json for the package: "files" as listed, the client's README as README.md.
node - "$STAGE" <<'EOF'
const fs = require("fs");
const path = require("path");
const stage = process.argv[2];
const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
const README = "client-wasm/README.md";
for (const f of pkg.files) {
  if (f === README) continue;
  if (/[*?[]/.test(f)) throw new Error(`npm-pack: package.json "files" entry ${f}: list files, not patterns`);
  fs.mkdirSync(path.join(stage, path.dirname(f)), { recursive: true });
  fs.copyFileSync(f, path.join(stage, f));
}
fs.copyFileSync(README, path.join(stage, "README.md"));
pkg.files = pkg.files.filter((f) => f !== README);
for (const k of ["private", "readme", "scripts", "devDependencies"]) delete pkg[k];
fs.writeFileSync(path.join(stage, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
EOF

if [ "${1:-}" = --stage ]; then
  echo "$STAGE"
  exit 0
fi
# Relative --pack-destination paths are the caller's, as with a plain `npm pack`.
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --pack-destination) args+=("$1" "$(cd "$CALLER" && realpath -m "$2")"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
npm pack "$STAGE" "${args[@]}"
