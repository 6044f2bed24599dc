#!/bin/sh
# Writes a deployment's job scripts into its own directory on the host ($1), from NAME CONTENT
# pairs: transient units then run them from files, so no script text ever passes through
# systemd's expansion of `$` and `%` on a unit's command line.
set -eu
dir=$1
shift
umask 077
mkdir -p "$dir"
while [ "$#" -ge 2 ]; do
  printf '%s' "$2" >"$dir/$1"
  shift 2
done
