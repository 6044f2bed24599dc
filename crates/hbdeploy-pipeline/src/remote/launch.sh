#!/bin/sh
# Starts one job of a deployment detached from this SSH session, so that a lost connection or a
# killed deployer cannot cut it off: a transient unit `hbdeploy-JOB-TOKEN` where the host runs
# systemd, else a `setsid` process whose parent is the host's init. Either runs run.sh, which
# keeps the job's output in DIR/JOB.log (capped). With FOLLOW=1 the log is streamed here until
# the job ends, then how it ended, from the files the job wrote: `hbdeploy-generation:LINK`,
# then `hbdeploy-exit:CODE`, `hbdeploy-profile-failed:CODE` or `hbdeploy-profile-moved:LINK`
# (nothing if the job ended without saying). FOLLOW=2 starts nothing: it follows the job
# already started, e.g. after the connection that started it was lost.
# Arguments: DIR JOB SYSTEMD(1|0) FOLLOW(0|1|2) SCRIPT ARG... (no `$` or `%` in any of them).
set -u
dir=$1 job=$2 systemd=$3 follow=$4 script=$5
shift 5
log="$dir/$job.log"
if [ "$follow" != 2 ]; then
  rm -f "$dir/$job.pid" "$dir/$job.end" "$dir/$job.generation" "$log.1"
  : >"$log"
  if [ "$systemd" = 1 ]; then
    if ! systemd-run --unit="hbdeploy-$job-${dir##*/}" --collect --no-block --quiet \
      --service-type=exec -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER \
      -p StandardInput=null -p StandardOutput=null -p StandardError=null \
      /bin/sh "$dir/run.sh" "$dir" "$job" "$script" "$@"; then
      echo "hbdeploy-launch-failed:systemd-run"
      exit 0
    fi
  else
    cd / && (setsid /bin/sh "$dir/run.sh" "$dir" "$job" "$script" "$@" </dev/null >/dev/null 2>&1 &)
  fi
  # run.sh writes its pid first thing; 30 s bound the wait for a job that never started.
  n=0
  while [ ! -s "$dir/$job.pid" ]; do
    n=$((n + 1))
    if [ "$n" -gt 3000 ]; then
      echo "hbdeploy-launch-failed:no pid after 30s"
      exit 0
    fi
    sleep 0.01
  done
fi
if [ "$follow" = 0 ]; then
  echo hbdeploy-launched
  exit 0
fi
if [ ! -s "$dir/$job.pid" ]; then
  echo "hbdeploy-launch-failed:no $job job in $dir"
  exit 0
fi
# By name (-F): the log is replaced when it reaches its cap. Following again (FOLLOW=2, after a
# lost connection) shows the log's last lines, then what follows.
lines=+1
[ "$follow" = 1 ] || lines=20
tail -F -s 0.05 -n "$lines" --pid="$(cat "$dir/$job.pid")" "$log" 2>/dev/null
generation=$(cat "$dir/$job.generation" 2>/dev/null)
[ -z "$generation" ] || echo "hbdeploy-generation:$generation"
end=$(cat "$dir/$job.end" 2>/dev/null)
case "$end" in
  '') ;;
  profile-failed:* | profile-moved:*) echo "hbdeploy-$end" ;;
  *) echo "hbdeploy-exit:$end" ;;
esac
