#!/bin/sh
# Stops a deployment's job if it still runs: its transient unit where the host runs systemd (an
# activation started by the watchdog runs in the watchdog's unit, and has none of its own), and
# its process group (the pid run.sh recorded), first with SIGTERM, then SIGKILL. A pid is only
# acted on while it still runs this deployment's scripts (pids are reused).
# Arguments: DIR JOB.
set -u
dir=$1 job=$2
pid=
{ read -r pid <"$dir/$job.pid"; } 2>/dev/null
[ -n "$pid" ] || exit 0
# Its command line, read by the shell itself (which drops the NULs between the arguments).
cmdline=
{ IFS= read -r cmdline <"/proc/$pid/cmdline"; } 2>/dev/null
case $cmdline in *"$dir/"*) ;; *) exit 0 ;; esac
echo "stopping the $job job, still running"
if [ -d /run/systemd/system ]; then
  systemctl stop "hbdeploy-$job-${dir##*/}.service" 2>/dev/null
fi
kill -- "-$pid" 2>/dev/null
n=0
while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 20 ]; do
  n=$((n + 1))
  sleep 0.1
done
kill -9 -- "-$pid" 2>/dev/null
true
