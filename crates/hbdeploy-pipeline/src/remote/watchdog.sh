#!/bin/sh
# Magic rollback's watchdog: waits SECS, then, unless the deployer decided first (whoever
# creates DIR/decided first decides), restores the previous system with switch.sh and writes
# the outcome to DIR/result.
# Arguments: DIR SECS OP PATH GOAL [NUMBER] (the last four as switch.sh takes them).
set -u
dir=$1 secs=$2
shift 2
echo "$$" >"$dir/watchdog.pid"
trap '' HUP
sleep "$secs"
if mkdir "$dir/decided" 2>/dev/null; then
  echo "no confirmation within ${secs}s: restoring the previous generation"
  # An activation still running would go on changing the system the restore puts back, and
  # leave the host half on either: it is stopped first (its unit, or its process group).
  pid=$(cat "$dir/activate.pid" 2>/dev/null)
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$dir/"; then
    echo "stopping the activation, still running"
    if [ -d /run/systemd/system ]; then
      systemctl stop "hbdeploy-activate-${dir##*/}.service" 2>/dev/null
    fi
    kill -- "-$pid" 2>/dev/null
    sleep 1
    kill -9 -- "-$pid" 2>/dev/null
  fi
  /bin/sh "$dir/switch.sh" "$dir" watchdog-restore "$@"
  code=$?
  if [ "$code" -eq 0 ]; then
    echo rolled-back >"$dir/result"
  else
    echo "rollback-failed $code" >"$dir/result"
  fi
fi
