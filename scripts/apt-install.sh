#!/bin/sh
# Installs the Debian packages listed in the given files (one per line, '#' comments) that
# are missing. As root with apt-get: installs them. Otherwise: prints the one command to run
# and exits 0, so `make install` still works without root (features that need a missing
# package refuse their input with a reason that names it).
set -eu
pkgs=$(cat "$@" | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
else
  echo "missing Debian packages; install them with:"
  echo "  sudo apt-get install --no-install-recommends$missing"
fi
