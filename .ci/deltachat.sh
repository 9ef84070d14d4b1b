#!/usr/bin/env bash
# Installs what the Delta Chat end-to-end test (tests/it/deltachat.rs) needs: the real
# Delta Chat core from PyPI (deltachat-rpc-server, a static binary inside the wheel, and
# its Python client) in a virtualenv, and Debian's nginx and openssl for the TLS front the
# core reaches postern's /new and autoconfig through. Idempotent; run as root.
#
# DELTACHAT_VENV overrides the virtualenv's place (default /opt/postern-ci/deltachat-venv;
# the test reads the same variable; not a POSTERN_* name, which postern's configuration
# would claim).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

version="2.65.0"
venv="${DELTACHAT_VENV:-/opt/postern-ci/deltachat-venv}"

if [ "$(id -u)" -ne 0 ]; then
  echo "deltachat.sh: run as root (apt-get)" >&2
  exit 1
fi

need=()
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
if ! /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} for the Delta Chat test"
  # The test starts nginx by hand with its own configuration; the package must not start
  # the system one (it would hold port 80 and outlive the run).
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  status=0
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
  [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || exit "$status"
fi

installed() {
  [ -x "$venv/bin/deltachat-rpc-server" ] && [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$version" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want = sys.argv[1]
assert version("deltachat-rpc-server") == want, "server"
assert version("deltachat-rpc-client") == want, "client"
import deltachat_rpc_client  # noqa: F401
EOF
}

if ! installed; then
  echo "installing deltachat-rpc-server and deltachat-rpc-client $version into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "deltachat-rpc-server==$version" "deltachat-rpc-client==$version"
  installed || { echo "deltachat.sh: the virtualenv at $venv is not usable" >&2; exit 1; }
fi
echo "Delta Chat core $("$venv/bin/deltachat-rpc-server" --version 2>&1)"
/usr/sbin/nginx -v 2>&1
