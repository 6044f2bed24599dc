#!/bin/sh
# Starts one job of a deployment detached from this SSH session, so that a lost connection or a
# killed deployer cannot cut it off: a transient unit `hbdeploy-JOB-TOKEN` where the host runs
# systemd, else a `setsid` process in a session of its own (its parent the host's init once this
# script ends). Either runs run.sh (but the watchdog, which runs as it is and keeps its own pid
# and log), which keeps the job's output in DIR/logs/JOB.log (capped) and tells its end at once.
# With FOLLOW=1 the job is started and its log is streamed here until the job ends, then how it
# ended, from the files the job wrote: `hbdeploy-generation:LINK`, then `hbdeploy-exit:CODE`,
# `hbdeploy-profile-failed:CODE` or `hbdeploy-profile-moved:LINK` (nothing if the job ended
# without saying). FOLLOW=2 starts nothing: it follows the job
# already started, e.g. after the connection that started it was lost. FOLLOW=3 starts
# magic rollback's watchdog instead (the unit `hbdeploy-watchdog-TOKEN`; SCRIPT ARG... are
# watchdog.sh's, ending with JOB's own), which arms itself and then starts JOB: once JOB runs
# this prints `hbdeploy-launched` and `hbdeploy-starting`, then follows it as FOLLOW=1 does.
# Arguments: DIR JOB SYSTEMD(1|0) FOLLOW(1|2|3) SCRIPT ARG... (no `$` or `%` in any of them).
set -u
dir=$1 job=$2 systemd=$3 follow=$4 script=$5
shift 5
log="$dir/logs/$job.log"
if [ "$follow" != 2 ]; then
  [ -d "$dir/logs" ] || mkdir "$dir/logs" || exit 1
  started="$dir/$job.started"
  # What an earlier run of this job left (none in a new deployment's directory: no `rm`).
  old=
  for file in "$dir/$job.pid" "$dir/$job.live" "$dir/$job.end" "$dir/$job.generation" \
    "$log.1" "$started"; do
    if [ -e "$file" ] || [ -L "$file" ]; then old="$old $file"; fi
  done
  # shellcheck disable=SC2086 # the deployment's file names hold no spaces
  [ -z "$old" ] || rm -f $old
  : >"$log"
  # The job that runs in the unit or session started here: the watchdog, which starts JOB.
  unit=$job
  [ "$follow" != 3 ] || unit=watchdog
  # run.sh writes the pid of the job it runs on this pipe once it runs: waited for without
  # looking again and again. Opened read-write here first, so that neither side's open waits
  # for the other and nothing written is lost.
  if ! mkfifo -m 600 "$started"; then
    echo "hbdeploy-launch-failed:cannot make $started"
    exit 0
  fi
  exec 4<>"$started"
  # A job runs under run.sh, which keeps its pid, its capped log and its end. The watchdog runs
  # as it is: it keeps its own pid and log (a few lines at most), which saves its unit a shell
  # and the log's programs.
  runner="$dir/run.sh"
  if [ "$follow" = 3 ]; then
    runner="$dir/$script"
  else
    set -- "$script" "$@"
  fi
  if [ "$systemd" = 1 ]; then
    # Without --no-block, systemd-run returns once the unit's process runs (exec), and fails
    # if it cannot start it: run.sh then always says it runs.
    if ! systemd-run --unit="hbdeploy-$unit-${dir##*/}" --collect --quiet \
      --service-type=exec -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER \
      -p StandardInput=null -p StandardOutput=null -p StandardError=null \
      /bin/sh "$runner" "$dir" "$unit" "$@"; then
      echo "hbdeploy-launch-failed:systemd-run"
      exit 0
    fi
  else
    # An asynchronous list: its one child runs `cd` and goes on as `setsid` (no subshell that
    # starts it and exits). Its parent is this shell until this shell ends (it never waits for
    # it), then the host's init.
    cd / && setsid /bin/sh "$runner" "$dir" "$unit" "$@" </dev/null >/dev/null 2>&1 4<&- &
  fi
  read -r live <&4
  exec 4<&-
  case "$live" in
    '' | *[!0-9]*)
      echo "hbdeploy-launch-failed:the watchdog did not start the $job job: ${live#failed:}"
      exit 0
      ;;
  esac
  if [ "$follow" = 3 ]; then
    echo hbdeploy-launched
    echo hbdeploy-starting
  fi
else
  { read -r live <"$dir/$job.live"; } 2>/dev/null || live=
fi
if [ -z "$live" ]; then
  echo "hbdeploy-launch-failed:no $job job in $dir"
  exit 0
fi
# By name (-F): the log is replaced when it reaches its cap. So `tail` also watches the log's
# directory, which holds nothing but logs: an event of another file there, read together with
# the log's last change, could end `tail --pid` before it reads that change (coreutils goes
# back to check a dead writer before it handles the events it has read). Following again
# (FOLLOW=2, after a lost connection) shows the log's last lines, then what follows. run.sh
# changes the log's time once the job's process has ended, which ends `tail` at once through
# inotify. Its own look every 0.1 s (-s) matters for a job that was killed, and wherever `tail`
# gets no inotify instance (the user's `fs.inotify.max_user_instances` used up): it then polls,
# and with coreutils' default of a second the end of an activation was seen up to a second late.
lines=+1
[ "$follow" != 2 ] || lines=20
tail -F -s 0.1 -n "$lines" --pid="$live" "$log" 2>/dev/null
generation='' end=''
{ read -r generation <"$dir/$job.generation"; } 2>/dev/null
[ -z "$generation" ] || echo "hbdeploy-generation:$generation"
{ read -r end <"$dir/$job.end"; } 2>/dev/null
case "$end" in
  '') ;;
  profile-failed:* | profile-moved:*) echo "hbdeploy-$end" ;;
  *) echo "hbdeploy-exit:$end" ;;
esac
