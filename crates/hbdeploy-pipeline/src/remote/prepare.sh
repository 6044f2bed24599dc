#!/bin/sh
# Before an activation, in one round trip: checks that PATH is a NixOS system (else prints
# `not-nixos`, or `missing` for a path not in the store, and changes nothing), writes the
# deployment's job scripts and files into DIR (COUNT pairs of NAME CONTENT), then, when
# arguments are left, starts the magic-rollback watchdog with them (DIR/launch.sh, which prints
# `hbdeploy-launched`). Prints `nixos` first when PATH is one.
# Arguments: PATH DIR COUNT NAME CONTENT... [LAUNCH-ARGUMENTS...].
set -u
path=$1 dir=$2 count=$3
shift 3
if [ ! -x "$path/bin/switch-to-configuration" ]; then
  if [ -e "$path" ]; then echo not-nixos; else echo missing; fi
  exit 0
fi
echo nixos
umask 077
mkdir -p "$dir" || exit 1
while [ "$count" -gt 0 ]; do
  printf '%s' "$2" >"$dir/$1" || exit 1
  shift 2
  count=$((count - 1))
done
[ "$#" -eq 0 ] || exec /bin/sh "$dir/launch.sh" "$@"
