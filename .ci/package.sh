#!/usr/bin/env bash
# Installs what the Debian package needs to be built and checked, then builds it:
#   cargo-deb (cargo install, a few minutes the first time), lintian, systemd
#   (systemd-analyze), man-db; then packaging/build-deb.sh -> target/debian/*.deb.
# tests/it/package.rs rebuilds incrementally from here (the release build is reused) and
# fails, naming this script, when a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need=()
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "package.sh: installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package.sh: cargo install cargo-deb --locked"
    cargo install cargo-deb --locked
fi

bash packaging/build-deb.sh
