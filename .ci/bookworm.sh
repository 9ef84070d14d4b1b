#!/usr/bin/env bash
# Builds, once per machine, the Debian bookworm root the systemd test boots with
# systemd-nspawn (tests/it/systemd.rs), and reuses it afterwards. Run as root:
#
#   sudo bash .ci/bookworm.sh          # build if missing, else check and reuse
#   sudo bash .ci/bookworm.sh --rebuild
#
# BOOKWORM_ROOT overrides the place (default /var/cache/postern-test/bookworm; the test
# reads the same variable), DEBIAN_MIRROR the mirror. The root is what a fresh bookworm
# server with Debian's mail packages has: systemd as init, Dovecot 2.3 (core, imapd,
# lmtpd) and Postfix ("Internet Site", mail name chat.postern.test), nothing of postern.
# It has no procps on purpose (no /bin/kill: the unit must not need it). The test boots
# a throwaway copy, so the cache stays clean. A build takes about 2 minutes and 250 MB;
# the root is only marked ready once systemd, Dovecot and Postfix are there.
set -euo pipefail

dir="${BOOKWORM_ROOT:-/var/cache/postern-test/bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="systemd,systemd-sysv,dbus,dovecot-core,dovecot-imapd,dovecot-lmtpd"
mailname="chat.postern.test"
marker="$dir/.postern-ready"

if [ "$(id -u)" -ne 0 ]; then
  echo "bookworm.sh: run as root (debootstrap and systemd-nspawn need it)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
  echo "bookworm.sh: installing ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# What the test needs in the root; prints the versions.
check() {
  local root="$1" bin
  for bin in /lib/systemd/systemd /usr/sbin/dovecot /usr/lib/dovecot/imap \
    /usr/lib/dovecot/lmtp /usr/sbin/postfix /usr/bin/apt-get; do
    if [ ! -e "$root$bin" ]; then
      echo "bookworm.sh: $bin is missing in $root" >&2
      return 1
    fi
  done
  echo "systemd $(chroot "$root" dpkg-query -W -f='${Version}' systemd)," \
    "dovecot $(chroot "$root" dovecot --version | cut -d' ' -f1)," \
    "postfix $(chroot "$root" postconf -h mail_version 2>/dev/null)"
}

# debootstrap and the package scripts may leave /proc, /sys or /dev mounted in the root.
unmount_under() {
  local root="$1" target
  [ -d "$root" ] || return 0
  root="$(realpath "$root")"
  awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r target; do
      umount -l "$(printf '%b' "$target")" || true
    done
}

if [ "${1:-}" = "--rebuild" ]; then
  unmount_under "$dir"
  rm -rf "$dir"
fi

if [ -e "$marker" ]; then
  echo "reusing $dir: $(check "$dir")"
  exit 0
fi

parent="$(dirname "$dir")"
mkdir -p "$parent"
tmp="$dir.build"
log="$parent/bookworm-debootstrap.log"
unmount_under "$tmp"
rm -rf "$tmp" "$dir"
start=$SECONDS
echo "building the bookworm root in $dir (debootstrap from $mirror)"
debootstrap --variant=minbase --include="$packages" bookworm "$tmp" "$mirror" >"$log" 2>&1 || {
  echo "bookworm.sh: debootstrap failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

# Postfix as the Debian installer sets it up for a mail server ("Internet Site"), with
# the answers given beforehand as .ci/run gives them; services are not started in the
# root (policy-rc.d), they start when the test boots it.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"
echo "$mailname" >"$tmp/etc/hostname"
echo "$mailname" >"$tmp/etc/mailname"
{
  echo "postfix postfix/main_mailer_type select Internet Site"
  echo "postfix postfix/mailname string $mailname"
} | chroot "$tmp" debconf-set-selections
mount -t proc proc "$tmp/proc"
set +e
chroot "$tmp" apt-get install -y -qq --no-install-recommends postfix >>"$log" 2>&1
status=$?
set -e
umount -l "$tmp/proc"
unmount_under "$tmp"
rm -f "$tmp/usr/sbin/policy-rc.d"
if [ "$status" -ne 0 ]; then
  echo "bookworm.sh: installing postfix failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
# A booted copy needs no login prompt, and no network setup of its own (it shares the
# host's network).
chroot "$tmp" systemctl mask console-getty.service getty@tty1.service \
  systemd-networkd.service systemd-resolved.service >/dev/null 2>&1 || true
chroot "$tmp" apt-get clean
versions="$(check "$tmp")"
mv "$tmp" "$dir"
echo "$versions" >"$marker"
echo "built $dir in $((SECONDS - start)) s ($(du -sh "$dir" | cut -f1)): $versions"
