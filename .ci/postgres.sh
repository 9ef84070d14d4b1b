#!/usr/bin/env bash
# Installs what the PostgreSQL tests need (tests/it/postgres.rs, the store suite): Debian's
# PostgreSQL server binaries and openssl for the test certificates. The tests start their
# own servers (initdb and pg_ctl in temporary directories); the packaged cluster that
# Debian creates is stopped and not used. Run as root; safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian starts a cluster on install; the tests need none of it.
if command -v pg_lsclusters >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl stop postgresql >/dev/null 2>&1 || true
fi

bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
"$bin/postgres" --version
id postgres >/dev/null
