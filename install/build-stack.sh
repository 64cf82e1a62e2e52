#!/usr/bin/env bash
# Builds a Debian root filesystem for Slipway's runc dynos: the alternative
# to the default "host" stack (the node's own /usr, /etc, /bin, /lib).
#
#   sudo install/build-stack.sh [options] DEST
#
# then set "dyno_runtime": "runc" and "dyno_stack": "DEST" in the node's
# config. Dynos see DEST read-only as /, their slug at /app (read-write), a
# private /tmp, and the node's /etc/resolv.conf and /etc/hosts; they run as
# uid/gid 20000, which the stack names "dyno" (home /app).
#
# Options:
#   --suite NAME      Debian suite (default: bookworm)
#   --mirror URL      Debian mirror (default: http://deb.debian.org/debian)
#   --arch ARCH       architecture (default: the host's, from dpkg)
#   --include PKGS    extra packages, comma-separated (added to the defaults)
#   --dry-run         print what would run, change nothing
#   -h, --help        this text
#
# The root filesystem is built in a temporary directory beside DEST and
# moved into place when complete, so DEST is either absent or whole. DEST
# must not exist yet (or be an empty directory).
set -euo pipefail

suite=bookworm
mirror=http://deb.debian.org/debian
arch=
extra=
dry=0
# What buildpacks and apps usually expect besides a shell (the Heroku stack
# carries much more; add what your apps need with --include).
packages=ca-certificates,curl,netbase,procps,tzdata,less,xz-utils,gzip,bzip2,unzip,git,locales
dyno_uid=20000

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build-stack: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=${2:?--suite needs a value}; shift 2 ;;
    --mirror) mirror=${2:?--mirror needs a value}; shift 2 ;;
    --arch) arch=${2:?--arch needs a value}; shift 2 ;;
    --include) extra=${2:?--include needs a value}; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "build-stack: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { usage >&2; exit 2; }
dest=$1

case "$suite" in *[!a-z0-9-]*|'') die "invalid suite name: $suite" ;; esac
case "$extra" in *[!a-zA-Z0-9.+,:-]*) die "invalid package list: $extra" ;; esac
[ -n "$extra" ] && packages="$packages,$extra"
case "$dest" in /*) ;; *) dest="$(pwd)/$dest" ;; esac
dest=${dest%/}
if [ -z "$dest" ]; then die "refusing to build into /"; fi
if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
  die "$dest exists and is not empty"
fi
if [ -z "$arch" ]; then
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
fi

tmp="$dest.tmp-$$"
debootstrap_cmd=(debootstrap --variant=minbase --arch="$arch" --include="$packages" "$suite" "$tmp" "$mirror")

if [ "$dry" = 1 ]; then
  echo "${debootstrap_cmd[*]}"
  echo "then: clean apt caches, add the dyno user ($dyno_uid), create /app, move $tmp to $dest"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (debootstrap needs it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$(dirname "$dest")"

echo "build-stack: debootstrap $suite ($arch) into $tmp"
"${debootstrap_cmd[@]}"

echo "build-stack: configuring"
# A locale, as Heroku's stacks have.
if [ -f "$tmp/etc/locale.gen" ]; then
  sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' "$tmp/etc/locale.gen"
  chroot "$tmp" locale-gen >/dev/null 2>&1 || echo "build-stack: warning: locale-gen failed" >&2
fi
chroot "$tmp" apt-get clean
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/log/*.log "$tmp"/var/log/apt/*
# The dyno user (the runc runtime runs dynos as uid/gid 20000).
grep -q "^dyno:" "$tmp/etc/group" || echo "dyno:x:$dyno_uid:" >>"$tmp/etc/group"
grep -q "^dyno:" "$tmp/etc/passwd" || echo "dyno:x:$dyno_uid:$dyno_uid:dyno:/app:/bin/bash" >>"$tmp/etc/passwd"
# Mount points: /app (the slug), /tmp (a private tmpfs, which takes the
# mode of this directory).
mkdir -p "$tmp/app" "$tmp/tmp" "$tmp/var/tmp"
chmod 0755 "$tmp/app"
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
# The node's name resolution is bind-mounted over these at run time.
: >"$tmp/etc/resolv.conf"
[ -f "$tmp/etc/hosts" ] || : >"$tmp/etc/hosts"
# Nothing node-specific.
: >"$tmp/etc/machine-id"
rm -f "$tmp/etc/hostname"
cat >"$tmp/etc/slipway-stack" <<EOF
SUITE=$suite
ARCH=$arch
PACKAGES=$packages
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

if [ -d "$dest" ]; then rmdir "$dest"; fi
mv "$tmp" "$dest"
trap - EXIT
echo "build-stack: done: $dest ($(du -sh "$dest" | cut -f1)); set \"dyno_stack\": \"$dest\""
