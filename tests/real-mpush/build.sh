#!/usr/bin/env bash
# Builds the Java side of the real-MPUSH interop suite into tests/real-mpush/target/:
#   lib-server/      MPUSH 0.8.0 (mpush-boot, mpush-client) and dependencies, from Maven Central
#   lib-client/      the Java client SDK (mpush-client-java 0.0.5)
#   classes-server/  PushApi, Watchdog   (compiled against lib-server)
#   classes-client/  JavaClientDriver    (compiled against lib-client)
# The two classpaths stay apart: the SDK and MPUSH define the same class names (see pom.xml).
#
# Does nothing when target/ is newer than pom.xml, the sources and this script. Prints one line.
# MAVEN_ARGS (e.g. -Dmaven.repo.local=/tmp/m2) is passed to mvn.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "real-mpush build: FAILED: $*" >&2; exit 1; }
command -v java >/dev/null || die "java not found (OpenJDK 17 is expected)"
command -v javac >/dev/null || die "javac not found (a JDK, not only a JRE, is needed)"
command -v mvn >/dev/null || die "mvn not found (Maven 3 is expected)"

fresh() { # STAMP PATHS...: true when STAMP exists and is newer than every file under PATHS
  local stamp=$1
  shift
  [ -f "$stamp" ] && [ -z "$(find "$@" -newer "$stamp" -print -quit)" ]
}

deps_ok=false classes_ok=false
fresh target/.deps pom.xml build.sh && [ -d target/lib-server ] && [ -d target/lib-client ] && deps_ok=true
$deps_ok && fresh target/.classes src && [ target/.classes -nt target/.deps ] && classes_ok=true
if $deps_ok && $classes_ok; then
  echo "real-mpush: Java drivers and MPUSH 0.8.0 jars up to date in tests/real-mpush/target"
  exit 0
fi

start=$(date +%s%N)
if ! $deps_ok; then
  rm -rf target/lib-server target/lib-client target/.deps
  # shellcheck disable=SC2086 # MAVEN_ARGS is a list of arguments
  if ! out=$(mvn -q -B ${MAVEN_ARGS:-} generate-resources 2>&1); then
    echo "$out" >&2
    die "mvn could not fetch MPUSH 0.8.0 from Maven Central"
  fi
  touch target/.deps
fi

javac_to() { # DIR CLASSPATH SOURCES...
  local dir=$1 cp=$2
  shift 2
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! out=$(javac --release 17 -encoding UTF-8 -Xlint:all -Xlint:-options -Xlint:-processing -Werror \
    -d "$dir" -cp "$cp" "$@" 2>&1); then
    echo "$out" >&2
    die "javac failed"
  fi
}
rm -f target/.classes
javac_to target/classes-server "target/lib-server/*" src/common/java/mpushweb/interop/*.java src/server/java/mpushweb/interop/*.java
javac_to target/classes-client "target/lib-client/*" src/common/java/mpushweb/interop/*.java src/client/java/mpushweb/interop/*.java
touch target/.classes

ms=$((($(date +%s%N) - start) / 1000000))
what="compiled the Java drivers"
$deps_ok || what="fetched MPUSH 0.8.0 ($(ls target/lib-server target/lib-client | grep -c '\.jar$') jars) and $what"
echo "real-mpush: $what in $((ms / 1000)).$((ms % 1000 / 100)) s"
