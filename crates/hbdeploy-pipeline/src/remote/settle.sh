#!/bin/sh
# Run under the lock: finds jobs of earlier deployments that still change the host (an
# activation, restore or rollback whose deployer died, or a watchdog's restore) and settles each
# before anything else starts: waits for it up to WAIT seconds, then stops it (its unit, or its
# process group). One line per job: `hbdeploy-settled:JOB:TOKEN:finished`, or
# `hbdeploy-settled:JOB:TOKEN:stopped:SYSTEMD:PREVIOUS` where SYSTEMD is 1 or 0 and PREVIOUS is
# what the deployment recorded in DIR/previous before it started (the change that puts the host
# back, `none` if there was nothing before it, `unknown` if it recorded nothing): a stopped
# activation leaves the profile on a system that never finished activating, so the deployer
# restores PREVIOUS before it reads the host as "previous" for its own deployment.
# Argument: WAIT.
set -u
wait=$1
systemd=0
[ -d /run/systemd/system ] && systemd=1
for pidfile in /run/hbdeploy/*/activate.pid /run/hbdeploy/*/restore.pid \
  /run/hbdeploy/*/rollback.pid /run/hbdeploy/*/watchdog-restore.pid; do
  [ -s "$pidfile" ] || continue
  dir=${pidfile%/*}
  job=${pidfile##*/}
  job=${job%.pid}
  pid=$(cat "$pidfile")
  # Only a live process that still runs this deployment's script (pids are reused).
  alive() { tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$dir/"; }
  alive || continue
  n=0
  while alive && [ "$n" -lt $((wait * 10)) ]; do
    n=$((n + 1))
    sleep 0.1
  done
  if ! alive; then
    echo "hbdeploy-settled:$job:${dir##*/}:finished"
    continue
  fi
  if [ "$systemd" = 1 ]; then
    systemctl stop "hbdeploy-$job-${dir##*/}.service" 2>/dev/null
  fi
  kill -- "-$pid" 2>/dev/null
  sleep 1
  kill -9 -- "-$pid" 2>/dev/null
  previous=$(head -n 1 "$dir/previous" 2>/dev/null)
  echo "hbdeploy-settled:$job:${dir##*/}:stopped:$systemd:${previous:-unknown}"
done
true
