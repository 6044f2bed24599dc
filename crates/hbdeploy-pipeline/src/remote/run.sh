#!/bin/sh
# Runs one job of a deployment, detached (started by launch.sh or by the watchdog): records its
# pid — the job's process group, which stop.sh stops — then runs SCRIPT with its output kept in
# DIR/JOB.log, capped: a log that reaches 512 KiB is moved to DIR/JOB.log.1 and a new one begun,
# so a job that prints without end never keeps more than 1 MiB on the host (/run is a tmpfs).
# SCRIPT writes how it ended to DIR/JOB.end.
# Arguments: DIR JOB SCRIPT ARG... (SCRIPT gets DIR JOB ARG...).
set -u
dir=$1 job=$2 script=$3
shift 3
echo "$$" >"$dir/$job.pid"
log="$dir/$job.log"
/bin/sh "$dir/$script" "$dir" "$job" "$@" 2>&1 | while :; do
  head -c 524288 >>"$log"
  # A log short of the cap means the output ended.
  [ "$(wc -c <"$log")" -ge 524288 ] || break
  mv -f "$log" "$log.1"
done
