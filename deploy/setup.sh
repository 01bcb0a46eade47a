#!/usr/bin/env bash
# Installs everything Flowcast needs on a fresh Debian machine, idempotently, caching
# downloads under ~/.cache/flowcast (FLOWCAST_CACHE):
#   - Debian packages: C toolchain bits for librdkafka, OpenSSL/SASL headers, Mosquitto, xz,
#     promtool (package prometheus)
#   - the slim CPU LibTorch for tch (deploy/libtorch/setup.sh), linked as ./.libtorch
#   - the Apache Kafka broker jars from Maven Central (deploy/kafka/fetch.sh)
#   - the real UCI Appliances Energy data (deploy/data/fetch.sh)
# (The tests' S3 server, SeaweedFS, is built by deploy/test.sh, not here: the demo does not
# need it.)
# Needs: Rust (cargo, rustfmt, clippy), Java 17+, Maven, Python 3 with pip; Go for the tests.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

APT_PACKAGES=(build-essential cmake pkg-config libssl-dev libsasl2-dev zlib1g-dev xz-utils
  mosquitto mosquitto-clients curl time prometheus openssl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Mosquitto's Debian package may start a system broker on 1883, and `prometheus` (wanted
# for promtool, which checks /metrics in the tests) a server on 9090: Flowcast starts its own.
for unit in mosquitto prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" || true
  fi
done

for tool in cargo java mvn python3; do
  command -v "$tool" >/dev/null || { log "missing $tool: install it first"; exit 1; }
done
cargo fmt --version >/dev/null 2>&1 || { log "missing rustfmt (rustup component add rustfmt)"; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { log "missing clippy (rustup component add clippy)"; exit 1; }

log "LibTorch: $("$REPO/deploy/libtorch/setup.sh")"
ln -sfn "${FLOWCAST_CACHE:-$HOME/.cache/flowcast}/libtorch" "$REPO/.libtorch"
log "Kafka jars: $("$REPO/deploy/kafka/fetch.sh")"
log "data: $("$REPO/deploy/data/fetch.sh")"
