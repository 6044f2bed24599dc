#!/bin/sh
# Takes the host's deployment lock and holds it for as long as the deployer's channel lives:
# `flock` on fd 9, then `cat` (which inherits fd 9) waits for the channel's stdin to close.
# $1: who holds it, shown to the next deployer that finds it busy.
set -u
mkdir -p /run/hbdeploy || exit 1
exec 9>>/run/hbdeploy/lock || exit 1
if flock -n 9; then
  printf '%s\n' "$1" >/run/hbdeploy/lock.info
  echo locked
  exec cat >/dev/null
else
  echo "busy $(cat /run/hbdeploy/lock.info 2>/dev/null)"
fi
