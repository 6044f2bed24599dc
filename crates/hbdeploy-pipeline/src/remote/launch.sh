#!/bin/sh
# Starts one job of a deployment detached from this SSH session, so that a lost connection or a
# killed deployer cannot cut it off: a transient unit `hbdeploy-JOB-TOKEN` where the host runs
# systemd, else a `setsid` process whose parent is the host's init. Its output goes to
# DIR/JOB.log; with FOLLOW=1 the log is streamed here until the job ends.
# Arguments: DIR JOB SYSTEMD(1|0) FOLLOW(1|0) SCRIPT ARG... (no `$` or `%` in any of them).
set -u
dir=$1 job=$2 systemd=$3 follow=$4 script=$5
shift 5
log="$dir/$job.log"
: >"$log"
rm -f "$dir/$job.pid"
if [ "$systemd" = 1 ]; then
  if ! systemd-run --unit="hbdeploy-$job-${dir##*/}" --collect --no-block --quiet \
    --service-type=exec -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER \
    -p StandardInput=null -p "StandardOutput=append:$log" -p "StandardError=append:$log" \
    /bin/sh "$dir/$script" "$@"; then
    echo "hbdeploy-launch-failed:systemd-run"
    exit 0
  fi
else
  cd / && (setsid /bin/sh "$dir/$script" "$@" <"/dev/null" >>"$log" 2>&1 &)
fi
# The job writes its pid first thing; 30 s bound the wait for a job that never started.
n=0
while [ ! -s "$dir/$job.pid" ]; do
  n=$((n + 1))
  if [ "$n" -gt 3000 ]; then
    echo "hbdeploy-launch-failed:no pid after 30s"
    exit 0
  fi
  sleep 0.01
done
if [ "$follow" = 1 ]; then
  exec tail -s 0.05 -n +1 --pid="$(cat "$dir/$job.pid")" -f "$log"
fi
echo hbdeploy-launched
