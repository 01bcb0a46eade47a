#!/usr/bin/env bash
# Builds the coordinator's web UI into engine/ui/dist/: app.js (src/app.js and uPlot, bundled
# and minified by esbuild), app.css (uPlot's stylesheet + src/app.css), index.html, login.html
# and SHA256SUMS. The bundle is committed, so `cargo build` needs no Node: run this script
# (needs node and npm) after changing anything in src/ or package.json, and commit dist/ with it.
# Idempotent and reproducible: running it twice gives byte-identical files.
set -euo pipefail
UI="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$UI"
log() { printf '\033[1m[ui]\033[0m %s\n' "$*" >&2; }

# The lock file names no registry host: drop any "resolved" URL a local npm may have added.
if grep -q '"resolved"' package-lock.json; then
  log "removing resolved URLs from package-lock.json"
  node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    for (const p of Object.values(lock.packages || {})) delete p.resolved;
    fs.writeFileSync("package-lock.json", JSON.stringify(lock, null, 2) + "\n");
  '
fi

log "npm ci"
npm ci --no-audit --no-fund --loglevel=error

rm -rf dist
mkdir -p dist
# uPlot's copyright header is not a "legal comment" to esbuild, so it is restated here.
UPLOT_VERSION="$(node -p 'require("./node_modules/uplot/package.json").version')"
UPLOT_NOTICE="/*! uPlot v${UPLOT_VERSION} | (c) 2025 Leon Sorokin | MIT License | https://github.com/leeoniya/uPlot */"
log "bundling src/app.js"
./node_modules/.bin/esbuild src/app.js --bundle --minify --format=iife --target=es2020 \
  --legal-comments=eof --charset=utf8 --log-level=warning --banner:js="$UPLOT_NOTICE" \
  --outfile=dist/app.js
{
  printf '%s\n' "$UPLOT_NOTICE"
  cat node_modules/uplot/dist/uPlot.min.css
  printf '\n'
  cat src/app.css
} > dist/app.css
cp src/index.html src/login.html dist/
(cd dist && LC_ALL=C sha256sum app.css app.js index.html login.html | LC_ALL=C sort -k2 > SHA256SUMS)
log "built $(cd dist && ls | tr '\n' ' ')"
