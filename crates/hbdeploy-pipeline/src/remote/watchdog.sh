#!/bin/sh
# Magic rollback's watchdog. It arms itself, then starts the activation itself, so that nothing
# changes the host before it can be undone: first it records the deployment as pending on
# persistent storage (/nix/var/hbdeploy/pending-TOKEN: the boot id, then the restore's
# arguments), so that a reboot before the deployment is settled is undone by the boot-time
# restore of hbdeploy's NixOS module (a confirmation or a finished restore removes the record);
# then it starts JOB (`run.sh DIR JOB SCRIPT ARG...`, a session of its own: stop.sh stops it by
# its process group) and tells launch.sh, which follows it, the job's pid on the pipe
# DIR/JOB.started; a record it cannot write starts nothing, and the pipe says why
# (`failed:WHY`).
# The confirmation window opens when the activation has ended (DIR/activate.end written, or its
# process gone): it then waits CONFIRM seconds for the deployer to decide. An activation still
# running ACTIVATION seconds after arming has hung: the window never opens. Either way, unless
# the deployer decided first (whoever creates DIR/decided first decides), it stops the activation
# if it still runs and restores the previous system with switch.sh (as the job
# watchdog-restore), and writes the outcome to DIR/result: `rolled-back:unconfirmed`,
# `rolled-back:activation-timeout`, `profile-moved:LINK` (switch.sh left a profile alone that
# moved since) or `rollback-failed CODE`.
# Arguments: DIR JOB CONFIRM ACTIVATION OP PATH GOAL NUMBER|- (the restore, as switch.sh takes
# it; `-`: no number) START-JOB SCRIPT ARG... (the activation, as run.sh takes it).
# launch.sh starts it as it is (not under run.sh): its pid goes to DIR/watchdog.pid first thing,
# for decide.sh (which stops its process group) and for settling, and its output to
# DIR/logs/watchdog.log.
set -u
echo "$$" >"$1/watchdog.pid"
if [ -d "$1/logs" ]; then
  exec >>"$1/logs/watchdog.log" 2>&1
fi
dir=$1 confirm=$3 limit=$4 op=$5 path=$6 goal=$7 number=$8
shift 8
[ "$number" != - ] || number=
record="/nix/var/hbdeploy/pending-${dir##*/}"
started="$dir/$1.started"
refuse() {
  if [ -p "$started" ]; then
    # Opened read-write, which never waits for a reader.
    exec 3<>"$started"
    echo "failed:$1" >&3
  fi
  exit 1
}
boot=
read -r boot </proc/sys/kernel/random/boot_id || refuse "cannot read the boot id"
[ -d /nix/var/hbdeploy ] || mkdir -p /nix/var/hbdeploy || refuse "cannot create /nix/var/hbdeploy"
# Written in place with one write (printf writes its output at once): nothing else reads
# records while this deployment holds the host's lock, and the boot-time restore reads them
# only at boot. (A `.new` file renamed into place cost an `mv` process per deployment.)
if ! printf '%s\n%s\n' "$boot" "$op $path $goal${number:+ $number}" >"$record"; then
  refuse "cannot write $record"
fi
trap '' HUP
setsid /bin/sh "$dir/run.sh" "$dir" "$@" </dev/null >/dev/null 2>&1 &
pid=$!
# Its end is waited for, not looked for again and again: the job is this shell's child, so
# `wait` returns once it has ended (ended without saying, e.g. killed, the window opens all the
# same), or at once when the timer's signal says the activation's limit has passed.
trap : USR1
(
  sleep "$limit" &
  sleeping=$!
  # Stopped (the job ended first): its `sleep` goes with it.
  trap 'kill "$sleeping"; exit 0' TERM
  wait "$sleeping" && kill -s USR1 "$$"
) </dev/null >/dev/null 2>&1 &
timer=$!
wait "$pid"
kill "$timer" 2>/dev/null
# Still running (the timer's signal ended the wait): it has hung. An ended job was reaped by
# `wait`, so its pid is no longer there.
reason=unconfirmed
kill -0 "$pid" 2>/dev/null && reason=activation-timeout
[ -e "$dir/decided" ] && exit 0
if [ "$reason" = unconfirmed ]; then
  sleep "$confirm"
fi
# Created only if it is not there yet (noclobber: O_EXCL), as decide.sh does.
set -C
{ true >"$dir/decided"; } 2>/dev/null || exit 0
set +C
if [ "$reason" = unconfirmed ]; then
  echo "no confirmation within ${confirm}s of the activation's end: restoring the previous generation"
else
  echo "the activation did not finish within ${limit}s: stopping it and restoring the previous generation"
fi
# An activation still running would go on changing the system the restore puts back, and leave
# the host half on either.
/bin/sh "$dir/stop.sh" "$dir" activate
/bin/sh "$dir/run.sh" "$dir" watchdog-restore switch.sh "$op" "$path" "$goal" ${number:+"$number"}
end=
{ read -r end <"$dir/watchdog-restore.end"; } 2>/dev/null
case "$end" in
  0) echo "rolled-back:$reason" >"$dir/result.new" ;;
  profile-moved:*) echo "$end" >"$dir/result.new" ;;
  *) echo "rollback-failed ${end:-unknown}" >"$dir/result.new" ;;
esac
mv -f "$dir/result.new" "$dir/result"
