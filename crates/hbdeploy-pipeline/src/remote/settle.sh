#!/bin/sh
# Run under the lock: finds jobs of earlier deployments that still change the host (an
# activation, restore or rollback whose deployer died) and settles each before anything else
# starts: waits for it up to WAIT seconds, then stops it (its unit, or its process group).
# One line per job: `hbdeploy-settled:JOB:TOKEN:finished` or `...:stopped`.
# Argument: WAIT.
set -u
wait=$1
for pidfile in /run/hbdeploy/*/activate.pid /run/hbdeploy/*/restore.pid /run/hbdeploy/*/rollback.pid; do
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
  if [ -d /run/systemd/system ]; then
    systemctl stop "hbdeploy-$job-${dir##*/}.service" 2>/dev/null
  fi
  kill -- "-$pid" 2>/dev/null
  sleep 1
  kill -9 -- "-$pid" 2>/dev/null
  echo "hbdeploy-settled:$job:${dir##*/}:stopped"
done
true
