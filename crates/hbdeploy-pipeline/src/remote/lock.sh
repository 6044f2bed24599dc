#!/bin/sh
# Takes the host's deployment lock and holds it for as long as the deployer's channel lives:
# `flock` on fd 9, then `cat` waits for the channel's stdin to close while this shell keeps fd 9.
# $1: who holds it, shown to the next deployer that finds it busy.
set -u
mkdir -p /run/hbdeploy || exit 1
exec 9>>/run/hbdeploy/lock || exit 1
info=/run/hbdeploy/lock.info
if flock -n 9; then
  # Written whole and renamed into place, so a deployer that finds the lock busy never reads
  # half of it; removed before the lock is let go, so it never names an earlier holder.
  printf '%s\n' "$1" >"$info.$$" && mv -f "$info.$$" "$info"
  echo locked
  cat >/dev/null
  rm -f "$info"
else
  # The holder may have the lock but not yet its name written: wait for it a moment.
  n=0
  holder=$(cat "$info" 2>/dev/null)
  while [ -z "$holder" ] && [ "$n" -lt 20 ]; do
    sleep 0.05
    n=$((n + 1))
    holder=$(cat "$info" 2>/dev/null)
  done
  echo "busy $holder"
fi
