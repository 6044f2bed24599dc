#!/bin/sh
# Starts one job of a deployment detached from this SSH session, so that a lost connection or a
# killed deployer cannot cut it off: a transient unit `hbdeploy-JOB-TOKEN` where the host runs
# systemd, else a `setsid` process whose parent is the host's init. Either runs run.sh, which
# keeps the job's output in DIR/logs/JOB.log (capped) and tells its end at once. With FOLLOW=1 the
# log is streamed here until the job ends, then how it ended, from the files the job wrote:
# `hbdeploy-generation:LINK`, then `hbdeploy-exit:CODE`, `hbdeploy-profile-failed:CODE` or `hbdeploy-profile-moved:LINK`
# (nothing if the job ended without saying). FOLLOW=2 starts nothing: it follows the job
# already started, e.g. after the connection that started it was lost.
# Arguments: DIR JOB SYSTEMD(1|0) FOLLOW(0|1|2) SCRIPT ARG... (no `$` or `%` in any of them).
set -u
dir=$1 job=$2 systemd=$3 follow=$4 script=$5
shift 5
log="$dir/logs/$job.log"
if [ "$follow" != 2 ]; then
  [ -d "$dir/logs" ] || mkdir "$dir/logs" || exit 1
  started="$dir/$job.started"
  rm -f "$dir/$job.pid" "$dir/$job.live" "$dir/$job.end" "$dir/$job.generation" "$log.1" \
    "$started"
  : >"$log"
  # run.sh writes the pid of the job it runs on this pipe once it runs: waited for without
  # looking again and again. Opened read-write here first, so that neither side's open waits
  # for the other and nothing written is lost.
  if ! mkfifo -m 600 "$started"; then
    echo "hbdeploy-launch-failed:cannot make $started"
    exit 0
  fi
  exec 4<>"$started"
  if [ "$systemd" = 1 ]; then
    # Without --no-block, systemd-run returns once the unit's process runs (exec), and fails
    # if it cannot start it: run.sh then always says it runs.
    if ! systemd-run --unit="hbdeploy-$job-${dir##*/}" --collect --quiet \
      --service-type=exec -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER \
      -p StandardInput=null -p StandardOutput=null -p StandardError=null \
      /bin/sh "$dir/run.sh" "$dir" "$job" "$script" "$@"; then
      echo "hbdeploy-launch-failed:systemd-run"
      exit 0
    fi
  else
    cd / && (setsid /bin/sh "$dir/run.sh" "$dir" "$job" "$script" "$@" </dev/null >/dev/null \
      2>&1 4<&- &)
  fi
  read -r live <&4
  exec 4<&-
else
  { read -r live <"$dir/$job.live"; } 2>/dev/null || live=
fi
if [ "$follow" = 0 ]; then
  echo hbdeploy-launched
  exit 0
fi
if [ -z "$live" ]; then
  echo "hbdeploy-launch-failed:no $job job in $dir"
  exit 0
fi
# By name (-F): the log is replaced when it reaches its cap. So `tail` also watches the log's
# directory, which holds nothing but logs: an event of another file there, read together with
# the log's last change, could end `tail --pid` before it reads that change (coreutils goes
# back to check a dead writer before it handles the events it has read). Following again (FOLLOW=2, after a
# lost connection) shows the log's last lines, then what follows. run.sh changes the log's time
# once the job's process has ended, which ends `tail` at once; its own look every second only
# matters for a job that was killed.
lines=+1
[ "$follow" = 1 ] || lines=20
tail -F -s 1 -n "$lines" --pid="$live" "$log" 2>/dev/null
generation=$(cat "$dir/$job.generation" 2>/dev/null)
[ -z "$generation" ] || echo "hbdeploy-generation:$generation"
end=$(cat "$dir/$job.end" 2>/dev/null)
case "$end" in
  '') ;;
  profile-failed:* | profile-moved:*) echo "hbdeploy-$end" ;;
  *) echo "hbdeploy-exit:$end" ;;
esac
