#!/usr/bin/env bash
# Installs what the fail2ban test (tests/it/fail2ban.rs) needs: Debian's fail2ban, for
# its fail2ban-regex. The service is not started by this install (a CI machine needs no
# running jail). Idempotent; run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if command -v fail2ban-regex >/dev/null 2>&1; then
  exit 0
fi
echo "installing fail2ban for the fail2ban filter test"
# Keep the package's scripts from starting the server, unless a policy is already set.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends fail2ban >/dev/null
fail2ban-regex --version
