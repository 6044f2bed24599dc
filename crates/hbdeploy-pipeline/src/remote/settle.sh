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
# A watchdog that has decided and still runs is restoring (it stops the activation, then runs
# the restore as its own child): it is one of these jobs (`hbdeploy-settled:watchdog:…`).
# Also one line per deployment whose watchdog was armed and nothing decided yet (its deployer
# died, or lost the host, before confirming): `hbdeploy-undecided:TOKEN:SYSTEMD:PREVIOUS`; the
# deployer settles it (adopts it if its activation succeeded, else restores PREVIOUS) before its
# own deployment starts, so that no watchdog of an earlier run acts on the host afterwards.
# These are found before any job is waited for, and a watchdog counts as a job only once it has
# decided, so one that decides meanwhile is in one list or the other, never in neither.
# Last, one line per record of a deployment armed in an earlier boot and never settled (its
# directory in /run went with the reboot; see watchdog.sh):
# `hbdeploy-pending:TOKEN:MADE:CHANGE`, MADE the generation it made (empty if none), CHANGE the
# restore; the deployer restores it as the boot-time restore would have. Records of `test`
# deployments are dropped: the reboot already left them.
# Argument: WAIT.
set -u
wait=$1
systemd=0
[ -d /run/systemd/system ] && systemd=1
undecided=
for pidfile in /run/hbdeploy/*/watchdog.pid; do
  [ -s "$pidfile" ] || continue
  dir=${pidfile%/*}
  [ -e "$dir/decided" ] && continue
  previous=$(head -n 1 "$dir/previous" 2>/dev/null)
  undecided="${undecided}hbdeploy-undecided:${dir##*/}:$systemd:${previous:-unknown}
"
done
for pidfile in /run/hbdeploy/*/activate.pid /run/hbdeploy/*/restore.pid \
  /run/hbdeploy/*/rollback.pid /run/hbdeploy/*/watchdog-restore.pid \
  /run/hbdeploy/*/watchdog.pid; do
  [ -s "$pidfile" ] || continue
  dir=${pidfile%/*}
  job=${pidfile##*/}
  job=${job%.pid}
  # An undecided watchdog is the deployer's to decide (listed above), not a job to wait for.
  if [ "$job" = watchdog ] && [ ! -e "$dir/decided" ]; then
    continue
  fi
  pid=$(cat "$pidfile")
  # Only a live process that still runs this deployment's scripts (pids are reused).
  # (Its command line read by the shell itself, which drops the NULs between the arguments.)
  alive() {
    cmdline=
    { IFS= read -r cmdline <"/proc/$pid/cmdline"; } 2>/dev/null
    case $cmdline in *"$dir/"*) return 0 ;; esac
    return 1
  }
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
printf '%s' "$undecided"
for record in /nix/var/hbdeploy/pending-*; do
  [ -f "$record" ] || continue
  token=${record##*/pending-}
  [ -d "/run/hbdeploy/$token" ] && continue
  change=$(sed -n 2p "$record")
  case "$change" in
    restore\ *) echo "hbdeploy-pending:$token:$(sed -n 3p "$record"):$change" ;;
    *) rm -f "$record" ;;
  esac
done
true
