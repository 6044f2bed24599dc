#!/bin/sh
# Starts a job that changes the system (an activation, a rollback) in one round trip: checks
# that PATH is a NixOS system (else prints `not-nixos`, or `missing` for a path not in the store,
# and changes nothing), writes the deployment's job scripts and files into DIR (COUNT pairs of
# NAME CONTENT), then goes on as launch.sh with the arguments left: the job started (by magic
# rollback's watchdog, once armed, where launch.sh's FOLLOW is 3) and followed to its end.
# Prints `nixos` first when PATH is one, and `hbdeploy-starting` before the job starts
# (launch.sh says it, after `hbdeploy-launched`, where the watchdog starts the job).
# Arguments: PATH DIR COUNT NAME CONTENT... JOB-LAUNCH-ARGUMENTS...
set -u
path=$1 dir=$2 count=$3
shift 3
if [ ! -x "$path/bin/switch-to-configuration" ]; then
  if [ -e "$path" ]; then echo not-nixos; else echo missing; fi
  exit 0
fi
echo nixos
umask 077
mkdir -p "$dir/logs" || exit 1
while [ "$count" -gt 0 ]; do
  printf '%s' "$2" >"$dir/$1" || exit 1
  shift 2
  count=$((count - 1))
done
[ "$4" = 3 ] || echo hbdeploy-starting
# Read by this shell, not run by a new one (one program fewer to start): it goes on as
# launch.sh, whose arguments are the ones left.
# shellcheck disable=SC1091 # written just above
. "$dir/launch.sh"
