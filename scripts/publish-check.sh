#!/usr/bin/env bash
# Checks that a release could be published, without publishing anything:
#   1. one version everywhere (CHANGELOG.md "Versioning"): package.json, the crates, the
#      versions of the workspace path dependencies, and a CHANGELOG section for it;
#   2. `cargo publish --dry-run` of mpush-protocol, mpush-gateway and mpush-proxy together
#      (cargo's workspace publishing resolves the unpublished crates locally), which packages
#      each crate and builds it from the packaged sources;
#   3. `npm publish --dry-run` of the staged package (scripts/npm-pack.sh --stage, which builds
#      pkg/ when stale) ships exactly the files a user needs, LICENSE included, and its
#      README.md is the client's (client-wasm/README.md), the one npm shows on the package page.
# Usage: scripts/publish-check.sh   (--allow-dirty is passed: it runs on work trees too)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

CRATES=(mpush-protocol mpush-gateway mpush-proxy)
NPM_FILES="CHANGELOG.md
LICENSE
README.md
index.d.ts
package.json
pkg/index.js
pkg/mpush_client_wasm.js
pkg/mpush_client_wasm_bg.wasm
pkg/shared.js"

fail() {
  echo "publish-check: FAILED: $*" >&2
  exit 1
}

# --- 1. versions ------------------------------------------------------------------------
NPM_VERSION=$(node -p "require('./package.json').version")
METADATA=$(cargo metadata --no-deps --format-version 1 --locked)
# Every workspace crate and every dependency on a workspace crate must carry the npm version.
MISMATCH=$(node -e '
  const meta = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const want = process.argv[1];
  const names = new Set(meta.packages.map((p) => p.name));
  const bad = [];
  for (const p of meta.packages) {
    if (p.version !== want) bad.push(`${p.name} is ${p.version}`);
    for (const d of p.dependencies) {
      if (names.has(d.name) && d.kind !== "dev" && d.req !== `^${want}`) bad.push(`${p.name} -> ${d.name} requires "${d.req}"`);
    }
  }
  console.log(bad.join("; "));
' "$NPM_VERSION" <<<"$METADATA")
[ -z "$MISMATCH" ] || fail "versions disagree with package.json ($NPM_VERSION): $MISMATCH"
grep -q "^## \[$NPM_VERSION\]" CHANGELOG.md || fail "CHANGELOG.md has no section \"## [$NPM_VERSION]\""
echo "publish-check: version $NPM_VERSION in package.json, every crate and CHANGELOG.md"

# --- 2. crates ----------------------------------------------------------------------------
for c in "${CRATES[@]}"; do
  list=$(cargo package --list --allow-dirty --locked -p "$c")
  grep -qx LICENSE <<<"$list" || fail "$c: LICENSE is not packaged"
  grep -qx README.md <<<"$list" || fail "$c: README.md is not packaged"
done
p_args=()
for c in "${CRATES[@]}"; do p_args+=(-p "$c"); done
# The verification builds each packaged crate against the others as registry crates, and
# cargo never rebuilds a registry crate of the same name and version: it reuses both the copy
# it unpacked into $CARGO_HOME/registry/src/-<hash>/ and the compiled artifacts. After a change
# one crate would be checked against an old build of another (seen here; also miden-vm PR
# #2530). So: a target dir of its own (the shared one keeps serving the other steps), with our
# crates cleaned out of it, and no unpacked copies.
PUBLISH_TARGET=${CARGO_TARGET_DIR:-$PWD/target}/publish-check
for c in "${CRATES[@]}"; do
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/"$c-$NPM_VERSION"
done
rm -rf "$PUBLISH_TARGET/package"
cargo clean --quiet --target-dir "$PUBLISH_TARGET" "${p_args[@]}" 2>/dev/null || true
cargo publish --dry-run --allow-dirty --locked --target-dir "$PUBLISH_TARGET" "${p_args[@]}"

# --- 3. npm -------------------------------------------------------------------------------
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
STAGE=$(scripts/npm-pack.sh --stage)
cmp -s "$STAGE/README.md" client-wasm/README.md || fail "the staged README.md is not client-wasm/README.md"
npm publish --dry-run --json "$STAGE" >"$OUT"
# npm's stdout also carries the prepack build's report; the JSON starts at the first "{" line.
read_report='
  const text = require("fs").readFileSync(process.argv[1], "utf8");
  const out = JSON.parse(text.slice(text.search(/^\{/m)));
  const pkg = out.files ? out : Object.values(out)[0];'
FILES=$(node -e "$read_report"' console.log(pkg.files.map((f) => f.path).sort().join("\n"));' "$OUT")
if [ "$FILES" != "$NPM_FILES" ]; then
  diff <(echo "$NPM_FILES") <(echo "$FILES") >&2 || true
  fail "npm publish would ship other files than expected (< expected, > actual)"
fi
SIZE=$(node -e "$read_report"' console.log(pkg.size);' "$OUT")
echo "publish-check: npm publish --dry-run ships $(wc -l <<<"$FILES") files, $SIZE bytes packed:"
sed 's/^/  /' <<<"$FILES"
