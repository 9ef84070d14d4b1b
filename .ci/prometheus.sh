#!/usr/bin/env bash
# Installs what the monitoring tests (tests/it/monitoring.rs) need: Debian's prometheus
# package, for /usr/bin/prometheus and /usr/bin/promtool. Idempotent; run as root. The
# tests start their own Prometheus on a free loopback port with a temporary config and
# storage, so the packaged service is stopped and disabled.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; then
  echo "installing prometheus for the monitoring tests"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
# Without systemd the package's init script may have started it.
if pgrep -x prometheus >/dev/null 2>&1 && [ -x /etc/init.d/prometheus ]; then
  /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi
/usr/bin/promtool --version | head -1
