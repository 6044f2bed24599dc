#!/bin/sh
# Run under the lock: finds what earlier deployments left undecided on the host and settles the
# jobs first. Each job still changing the host (an activation, restore or rollback whose deployer
# died, or a watchdog's restore) is waited for up to WAIT seconds, then stopped (stop.sh). One
# line per job: `hbdeploy-settled:JOB:TOKEN:finished`, or
# `hbdeploy-settled:JOB:TOKEN:stopped:SYSTEMD:PREVIOUS` where SYSTEMD is 1 or 0 and PREVIOUS is
# what the deployment recorded in DIR/previous before it started (the change that puts the host
# back, `none` if there was nothing before it, `unknown` if it recorded nothing): a stopped
# activation leaves the profile on a system that never finished activating, so the deployer
# restores PREVIOUS before it reads the host as "previous" for its own deployment.
# Then one line per deployment whose watchdog was armed and nothing decided yet (its deployer
# died, or lost the host, before confirming): `hbdeploy-undecided:TOKEN:SYSTEMD:PREVIOUS`; the
# deployer settles it (adopts it if its activation succeeded, else restores PREVIOUS) before its
# own deployment starts, so that no watchdog of an earlier run acts on the host afterwards.
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
  # Only a live process that still runs this deployment's scripts (pids are reused).
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
  /bin/sh "$dir/stop.sh" "$dir" "$job" >/dev/null
  previous=$(head -n 1 "$dir/previous" 2>/dev/null)
  echo "hbdeploy-settled:$job:${dir##*/}:stopped:$systemd:${previous:-unknown}"
done
for pidfile in /run/hbdeploy/*/watchdog.pid; do
  [ -s "$pidfile" ] || continue
  dir=${pidfile%/*}
  [ -e "$dir/decided" ] && continue
  previous=$(head -n 1 "$dir/previous" 2>/dev/null)
  echo "hbdeploy-undecided:${dir##*/}:$systemd:${previous:-unknown}"
done
true
