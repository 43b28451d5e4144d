#!/usr/bin/env bash
# What a new contributor gets: clone this repository's HEAD into an empty folder and run
# `make test` there from cold, with a PATH of only python3, make, git, bash and basic shell
# tools -- no java, no mvn -- and no KAFKA_CACHE_DIR (the clone uses its own .cache).
#
#   dev/test-fresh.sh [make-target] [VAR=value ...]     default: make test
#   e.g. dev/test-fresh.sh test KAFKA_TEST_PORT=39192
#
# Environment: FRESH_DIR  parent folder to use (default: a new mktemp -d); it must be empty.
# The clone is left in place for inspection; the script prints where it is.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${1:-test}"
shift || true

DIR="${FRESH_DIR:-$(mktemp -d)}"
mkdir -p "$DIR"
[[ -z "$(ls -A "$DIR")" ]] || { echo "test-fresh: $DIR is not empty" >&2; exit 1; }
BIN="$(mktemp -d)/bin" # elsewhere: the clone is the only entry of its folder
mkdir -p "$BIN"

# Real binaries, not shims (pyenv's python3 shim is a bash script that needs pyenv itself).
python3_real="$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')"
ln -s "$python3_real" "$BIN/python3"
for tool in make git bash sh env cat sed grep awk mkdir rm rmdir ls cp mv ln sha256sum cut tr \
    head tail sort uniq wc find flock sleep kill ps date dirname basename readlink realpath touch \
    chmod tee uname xargs mktemp setsid base64 id tput expr test true false printf; do
    path="$(PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin command -v "$tool" || true)"
    [[ "$path" == /* ]] && ln -s "$path" "$BIN/$tool"
done
for banned in java mvn javac; do
    if PATH="$BIN" command -v "$banned" >/dev/null 2>&1; then
        echo "test-fresh: $banned is on the fresh PATH" >&2
        exit 1
    fi
done

git clone --quiet "$SRC" "$DIR/iotmon"
git -C "$DIR/iotmon" log --oneline -1
echo "test-fresh: clone in $DIR/iotmon, PATH=$BIN ($(ls "$BIN" | wc -l) tools, no java/mvn)"

cd "$DIR/iotmon"
start=$(date +%s)
rc=0
env -u KAFKA_CACHE_DIR -u IOTMON_TEST_BOOTSTRAP -u VIRTUAL_ENV -u JAVA_HOME -u KAFKA_JAVA \
    PATH="$BIN" HOME="${HOME:-/root}" make "$TARGET" "$@" || rc=$?
echo "test-fresh: make $TARGET exited $rc after $(($(date +%s) - start)) s (clone: $DIR/iotmon)"
exit "$rc"
