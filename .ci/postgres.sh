#!/usr/bin/env bash
# Installs what the PostgreSQL tests need (tests/it/postgres.rs, the store suite): Debian's
# PostgreSQL server binaries and openssl for the test certificates. The tests start their
# own servers (initdb and pg_ctl in temporary directories, random ports, their own socket
# directories), so the cluster Debian's package may start is neither used nor in the way.
# Run as root; safe to run again.
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

bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
"$bin/postgres" --version
id postgres >/dev/null
