#!/bin/sh
# Runs one job of a deployment, detached (started by launch.sh or by the watchdog): records its
# pid — the job's process group, which stop.sh stops — then runs SCRIPT with its output kept in
# DIR/logs/JOB.log, capped: a log that reaches 512 KiB is moved to JOB.log.1 and a new one begun,
# so a job that prints without end never keeps more than 1 MiB on the host (/run is a tmpfs).
# SCRIPT writes how it ended to DIR/JOB.end.
# A follower (launch.sh) learns the job's end at once, without looking again and again: it
# follows the log with `tail --pid` on the job's own process (DIR/JOB.live, also written on the
# pipe DIR/JOB.started when launch.sh waits there), and that process's end is followed by a
# change of the log's time, which wakes `tail` to find it gone.
# Arguments: DIR JOB SCRIPT ARG... (SCRIPT gets DIR JOB ARG...).
set -u
dir=$1 job=$2 script=$3
shift 3
echo "$$" >"$dir/$job.pid"
[ -d "$dir/logs" ] || mkdir "$dir/logs"
log="$dir/logs/$job.log"
# SCRIPT is read by the pipeline's own subshell, not run by a new shell (one program fewer to
# start), with the arguments a run of its own would get.
{
  {
    set -- "$dir" "$job" "$@"
    # shellcheck disable=SC1090 # a job script of this deployment, written by prepare.sh
    . "$dir/$script"
  } 2>&1 | while :; do
    head -c 524288 >>"$log"
    # A log short of the cap means the output ended.
    [ "$(wc -c <"$log")" -ge 524288 ] || break
    mv -f "$log" "$log.1"
  done
} &
live=$!
echo "$live" >"$dir/$job.live"
# Opened read-write, which never waits for a reader; launch.sh holds the pipe open already.
if [ -p "$dir/$job.started" ]; then
  exec 3<>"$dir/$job.started"
  echo "$live" >&3
  exec 3>&-
fi
wait "$live"
status=$?
touch "$log"
exit "$status"
