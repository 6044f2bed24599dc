#!/bin/sh
# The deployer's side of the decision: confirm (and stop the watchdog) if the watchdog has not
# decided yet, else print what it did (or `restoring` while it still works). With JOB, only a
# job that ended with success (`hbdeploy-exit:0` in its log) may be confirmed: while it runs, or
# if it failed, nothing is decided (`undecided:WHY`) and the watchdog restores the host unless
# a later attempt confirms. A deployer that lost its session mid-activation learns the outcome
# this way without ever confirming a system it did not see activated.
# Arguments: DIR SYSTEMD(1|0) [JOB].
set -u
dir=$1 systemd=$2 job=${3:-}
if [ -n "$job" ] && [ ! -e "$dir/decided" ]; then
  if ! grep -q '^hbdeploy-exit:0$' "$dir/$job.log" 2>/dev/null; then
    if grep -q '^hbdeploy-\(exit\|profile-failed\):' "$dir/$job.log" 2>/dev/null; then
      echo "undecided:the $job job failed"
    else
      echo "undecided:the $job job has not finished"
    fi
    exit 0
  fi
fi
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
