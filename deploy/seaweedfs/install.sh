#!/usr/bin/env bash
# Builds SeaweedFS's `weed` binary (the S3-compatible server the checkpoint tests run
# against) from its Go module at a pinned version into the Flowcast cache, with the Go
# module and build caches there too. Idempotent: skips the build when the binary of that
# version is present. Prints the binary's path.
#
# Needs Go (the one on PATH, else /usr/local/go/bin/go). FLOWCAST_GOTOOLCHAIN, when set,
# becomes GOTOOLCHAIN for the build (for a module that needs a newer Go than installed).
set -euo pipefail
VERSION="v0.0.0-20261109003541-7506e5f91cd6"
MODULE="github.com/seaweedfs/seaweedfs"
CACHE="${FLOWCAST_CACHE:-$HOME/.cache/flowcast}"
DEST="$CACHE/seaweedfs/$VERSION"
if [[ -x "$DEST/weed" ]]; then
  echo "$DEST/weed"
  exit 0
fi
GO="$(command -v go || echo /usr/local/go/bin/go)"
[[ -x "$GO" ]] || { echo "install.sh: Go is required to build SeaweedFS (install golang)" >&2; exit 1; }
mkdir -p "$DEST"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
[[ -z "${FLOWCAST_GOTOOLCHAIN:-}" ]] || export GOTOOLCHAIN="$FLOWCAST_GOTOOLCHAIN"
echo "building SeaweedFS $VERSION with $("$GO" version) (a cold build takes minutes)" >&2
# `go install MODULE/weed@VERSION` refuses a module whose go.mod has replace directives
# (SeaweedFS's has), so: download the module into the module cache and build its `weed`
# package as the main module, from that folder. Into a scratch folder, then moved: an
# interrupted build leaves no half binary behind.
SRC="$(GOWORK=off GOFLAGS=-modcacherw "$GO" mod download -json "$MODULE@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -f "$SRC/go.mod" ]] || { echo "install.sh: could not download $MODULE@$VERSION" >&2; exit 1; }
rm -rf "$DEST/.bin"
mkdir -p "$DEST/.bin"
(cd "$SRC" && GOWORK=off "$GO" build -trimpath -o "$DEST/.bin/weed" ./weed) >&2
mv "$DEST/.bin/weed" "$DEST/weed"
rm -rf "$DEST/.bin"
echo "$DEST/weed"
