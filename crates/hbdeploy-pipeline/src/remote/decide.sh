#!/bin/sh
# The deployer's side of the decision: confirm (and stop the watchdog) if the watchdog has not
# decided yet, else print what it did (or `restoring` while it still works).
# Arguments: DIR SYSTEMD(1|0).
set -u
dir=$1 systemd=$2
if mkdir "$dir/decided" 2>/dev/null; then
  if [ "$systemd" = 1 ]; then
    systemctl stop "hbdeploy-watchdog-${dir##*/}.service" 2>/dev/null
  else
    kill -- "-$(cat "$dir/watchdog.pid")" 2>/dev/null
  fi
  echo confirmed
else
  cat "$dir/result" 2>/dev/null || echo restoring
fi
