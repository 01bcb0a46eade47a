#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and its WebDriver (chromedriver), idempotently,
# for the web UI's browser test. Does nothing when both binaries are already there.
set -euo pipefail
log() { printf '\033[1m[browser]\033[0m %s\n' "$*" >&2; }

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  log "chromium and chromedriver already installed"
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then SUDO=(sudo); fi
PKGS=(chromium chromium-driver)
export DEBIAN_FRONTEND=noninteractive

log "installing ${PKGS[*]}"
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${PKGS[@]}"; then
  log "install failed; refreshing the package lists and retrying"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${PKGS[@]}"
fi
/usr/bin/chromium --version >&2
/usr/bin/chromedriver --version >&2
