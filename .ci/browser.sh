#!/usr/bin/env bash
# Installs what the browser tests (tests/it/browser.rs) need: Debian's Chromium and its
# WebDriver. Idempotent; run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
echo "installing chromium chromium-driver for the browser tests"
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromedriver --version
