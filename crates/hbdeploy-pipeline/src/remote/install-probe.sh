#!/bin/sh
# `hbdeploy install`: looks at the machine booted into a NixOS installer before anything is
# copied or wiped. Prints `uid N`, /etc/os-release as `os-release LINE`, `nixos-install` if it
# can be run, and for each DEVICE `device DEVICE SIZE MODEL` or `missing DEVICE`.
# Arguments: SYSTEM_BIN DEVICE... (SYSTEM_BIN: where a NixOS system keeps its programs).
bin=$1
shift
echo "uid $(id -u)"
sed 's/^/os-release /' /etc/os-release 2>/dev/null
PATH="$PATH:$bin" command -v nixos-install >/dev/null 2>&1 && echo nixos-install
for d in "$@"; do
  if [ -e "$d" ]; then
    echo "device $d $(lsblk -dno SIZE,MODEL "$d" 2>/dev/null | head -n 1 | tr -s ' ')"
  else
    echo "missing $d"
  fi
done
true
