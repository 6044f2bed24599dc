#!/bin/sh
# Magic rollback's watchdog, armed before the activation starts. The confirmation window opens
# when the activation has ended (DIR/activate.end written, or its process gone): it then waits
# CONFIRM seconds for the deployer to decide. An activation still running ACTIVATION seconds
# after arming has hung: the window never opens. Either way, unless the deployer decided first
# (whoever creates DIR/decided first decides), it stops the activation if it still runs and
# restores the previous system with switch.sh (as the job watchdog-restore), and writes the
# outcome to DIR/result: `rolled-back:unconfirmed`, `rolled-back:activation-timeout`,
# `profile-moved:LINK` (switch.sh left a profile alone that moved since) or
# `rollback-failed CODE`.
# Before anything else it records the deployment as pending on persistent storage
# (/nix/var/hbdeploy/pending-TOKEN: the boot id, then the restore's arguments), so that a reboot
# before the deployment is settled is undone by the boot-time restore of hbdeploy's NixOS module;
# a confirmation or a finished restore removes the record.
# Arguments: DIR JOB CONFIRM ACTIVATION OP PATH GOAL [NUMBER] (the last four as switch.sh takes
# them).
set -u
dir=$1 confirm=$3 limit=$4
shift 4
record="/nix/var/hbdeploy/pending-${dir##*/}"
mkdir -p /nix/var/hbdeploy
printf '%s\n%s\n' "$(cat /proc/sys/kernel/random/boot_id)" "$*" >"$record.new"
mv -f "$record.new" "$record"
trap '' HUP
reason=unconfirmed
n=0
pid=
# Until the activation runs (its pid is written moments after this is armed), looked for with
# shell builtins every 0.2 s; an activation that never starts is as good as hung.
while [ -z "$pid" ]; do
  # The deployer decided (e.g. it restores a failed activation itself): nothing left to do.
  [ -e "$dir/decided" ] && exit 0
  [ -e "$dir/activate.end" ] && break
  if [ -s "$dir/activate.pid" ]; then
    read -r pid <"$dir/activate.pid" || pid=
    [ -n "$pid" ] && break
  fi
  if [ "$n" -ge $((limit * 5)) ]; then
    reason=activation-timeout
    break
  fi
  n=$((n + 1))
  sleep 0.2
done
# Then its end is waited for by one process, not looked for again and again: `tail --pid`
# returns once the activation's process has ended (ended without saying, e.g. killed, the
# window opens all the same), `timeout` when it is still running at the activation's limit.
if [ -n "$pid" ] && [ ! -e "$dir/activate.end" ]; then
  timeout --foreground "$((limit - n / 5))" tail -s 1 --pid="$pid" -f /dev/null >/dev/null 2>&1
  [ "$?" = 124 ] && reason=activation-timeout
fi
[ -e "$dir/decided" ] && exit 0
if [ "$reason" = unconfirmed ]; then
  sleep "$confirm"
fi
mkdir "$dir/decided" 2>/dev/null || exit 0
if [ "$reason" = unconfirmed ]; then
  echo "no confirmation within ${confirm}s of the activation's end: restoring the previous generation"
else
  echo "the activation did not finish within ${limit}s: stopping it and restoring the previous generation"
fi
# An activation still running would go on changing the system the restore puts back, and leave
# the host half on either.
/bin/sh "$dir/stop.sh" "$dir" activate
/bin/sh "$dir/run.sh" "$dir" watchdog-restore switch.sh "$@"
end=$(cat "$dir/watchdog-restore.end" 2>/dev/null)
case "$end" in
  0) echo "rolled-back:$reason" >"$dir/result.new" ;;
  profile-moved:*) echo "$end" >"$dir/result.new" ;;
  *) echo "rollback-failed ${end:-unknown}" >"$dir/result.new" ;;
esac
mv -f "$dir/result.new" "$dir/result"
