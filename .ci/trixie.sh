#!/usr/bin/env bash
# Builds, once per machine, the Debian trixie chroot the Dovecot 2.4 tests run Dovecot in
# (tests/it/dovecot24.rs), and reuses it afterwards. Run as root:
#
#   sudo bash .ci/trixie.sh          # build if missing, else check and reuse
#   sudo bash .ci/trixie.sh --rebuild
#
# TRIXIE_CHROOT overrides the place (default /var/cache/postern-test/trixie; the tests read
# the same variable; not a POSTERN_* name, which postern's configuration would claim),
# DEBIAN_MIRROR the mirror. A build takes about 1.5 minutes and 300 MB; the chroot is only
# marked ready once its Dovecot reports 2.4 and the Lua auth module is there.
set -euo pipefail

dir="${TRIXIE_CHROOT:-/var/cache/postern-test/trixie}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="dovecot-core,dovecot-imapd,dovecot-lmtpd,dovecot-auth-lua"
marker="$dir/.postern-ready"

if [ "$(id -u)" -ne 0 ]; then
  echo "trixie.sh: run as root (debootstrap and chroot need it)" >&2
  exit 1
fi

# Mounts under a chroot tree. The tests bind-mount each temporary directory P at
# <chroot>/P and unmount it when they end; a killed run leaves the mount behind. `stale`
# unmounts only those whose P is gone (so tests running now keep theirs), `all` every one.
unmount_under() {
  local root="$1" which="$2" target
  [ -d "$root" ] || return 0
  root="$(realpath "$root")"
  # Deepest first.
  awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r target; do
      target="$(printf '%b' "$target")"
      if [ "$which" = stale ] && [ -d "${target#"$root"}" ]; then
        continue
      fi
      echo "unmounting leftover $target"
      umount -l "$target" || true
      # A test's mount point is an empty directory of its own.
      [ "$which" = stale ] && rmdir "$target" 2>/dev/null || true
    done
  if [ "$which" = all ] &&
    awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    echo "trixie.sh: mounts remain under $root; not touching it" >&2
    exit 1
  fi
}

# The version line of the chroot's Dovecot, and a check that the Lua auth module is there.
check() {
  local root="$1" version
  version="$(chroot "$root" dovecot --version)"
  case "$version" in
    2.4.*) ;;
    *) echo "trixie.sh: expected Dovecot 2.4 in $root, got '$version'" >&2; return 1 ;;
  esac
  if ! ls "$root"/usr/lib/dovecot/modules/auth/lib*authdb_lua.so >/dev/null 2>&1; then
    echo "trixie.sh: dovecot-auth-lua is missing in $root" >&2
    return 1
  fi
  echo "$version"
}

if [ "${1:-}" = "--rebuild" ]; then
  unmount_under "$dir" all
  rm -rf "$dir"
fi

if [ -e "$marker" ]; then
  unmount_under "$dir" stale
  echo "reusing $dir: Dovecot $(check "$dir")"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# Build beside the final place and move it there when complete, so an interrupted build
# never looks ready.
parent="$(dirname "$dir")"
mkdir -p "$parent"
tmp="$dir.build"
unmount_under "$tmp" all
rm -rf "$tmp"
unmount_under "$dir" all
rm -rf "$dir"
start=$SECONDS
echo "building the trixie chroot in $dir (debootstrap from $mirror)"
debootstrap --variant=minbase --include="$packages" trixie "$tmp" "$mirror" \
  >"$parent/debootstrap.log" 2>&1 || {
  echo "trixie.sh: debootstrap failed; the end of $parent/debootstrap.log:" >&2
  tail -n 30 "$parent/debootstrap.log" >&2
  exit 1
}
# debootstrap may leave /proc or /sys mounted in the target.
unmount_under "$tmp" all
version="$(check "$tmp")"
# The tests bind-mount their temporary directories under the chroot's /tmp.
chmod 1777 "$tmp/tmp"
mv "$tmp" "$dir"
echo "dovecot $version" >"$marker"
echo "built $dir in $((SECONDS - start)) s ($(du -sh "$dir" | cut -f1)): Dovecot $version"
