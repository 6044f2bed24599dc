#!/bin/sh
# Starts a job that changes the system (an activation, a rollback) in one round trip: checks
# that PATH is a NixOS system (else prints `not-nixos`, or `missing` for a path not in the store,
# and changes nothing), writes the deployment's job scripts and files into DIR (COUNT pairs of
# NAME CONTENT), starts the magic-rollback watchdog with the first WATCHDOG launch arguments
# (launch.sh, which prints `hbdeploy-launched`; nothing else starts if it did not), then, when
# arguments are left, prints `hbdeploy-starting` and becomes launch.sh with them: the job
# started and followed to its end. Prints `nixos` first when PATH is one.
# Arguments: PATH DIR COUNT NAME CONTENT... WATCHDOG [WATCHDOG-LAUNCH-ARGUMENTS...]
# [JOB-LAUNCH-ARGUMENTS...].
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
watchdog=$1
shift
if [ "$watchdog" -gt 0 ]; then
  # launch.sh with the first WATCHDOG arguments only (the loop appends them after all of them,
  # then the originals are shifted away).
  all=$#
  out=$(
    i=0
    for arg do
      [ "$i" -lt "$watchdog" ] && set -- "$@" "$arg"
      i=$((i + 1))
    done
    shift "$all"
    /bin/sh "$dir/launch.sh" "$@"
  )
  status=$?
  [ -z "$out" ] || printf '%s\n' "$out"
  case "$out" in
    *hbdeploy-launched*) ;;
    *) exit "$status" ;;
  esac
  shift "$watchdog"
fi
[ "$#" -gt 0 ] || exit 0
echo hbdeploy-starting
exec /bin/sh "$dir/launch.sh" "$@"
