#!/bin/sh
# The deployer's side of the decision: confirm (and stop the watchdog) if the watchdog has not
# decided yet, else print what it did (`restoring` while it still works). With JOB, only a job
# that ended with success (DIR/JOB.end is 0) may be confirmed: while it runs, or if it failed,
# nothing is decided (`undecided:WHY`) and the watchdog restores the host unless a later attempt
# confirms. A deployer that lost its session mid-activation learns the outcome this way without
# ever confirming a system it did not see activated. A confirmation settles the deployment: its
# record in /nix/var/hbdeploy (see watchdog.sh) goes. Without JOB the deployer only claims the
# decision, to restore the host itself; the record stays until that restore is done. `gone`:
# the deployment's directory was removed (a later deployment settled it).
# Arguments: DIR [JOB].
set -u
dir=$1 job=${2:-}
if [ ! -d "$dir" ]; then
  echo gone
  exit 0
fi
if [ -n "$job" ] && [ ! -e "$dir/decided" ]; then
  end=
  { read -r end <"$dir/$job.end"; } 2>/dev/null
  case "$end" in
    0) ;;
    '')
      echo "undecided:the $job job has not finished"
      exit 0
      ;;
    *)
      echo "undecided:the $job job failed ($end)"
      exit 0
      ;;
  esac
fi
# Whoever creates DIR/decided first decides: created only if it is not there yet (noclobber:
# O_EXCL, one system call and no process), by this script or by the watchdog. (`true`, not
# `:`: a failed redirection of a special built-in would end the shell.)
claimed=0
set -C
{ true >"$dir/decided"; } 2>/dev/null && claimed=1
set +C
if [ "$claimed" = 1 ]; then
  # Once `decided` exists the watchdog never acts. Its process group goes: run.sh leads it, as
  # the main process of its unit where the host runs systemd, whose end ends the unit.
  pid=
  { read -r pid <"$dir/watchdog.pid"; } 2>/dev/null
  [ -z "$pid" ] || kill -- "-$pid" 2>/dev/null
  if [ -n "$job" ]; then
    echo confirmed >"$dir/result"
    rm -f "/nix/var/hbdeploy/pending-${dir##*/}"
  fi
  echo confirmed
elif { read -r result <"$dir/result"; } 2>/dev/null; then
  echo "$result"
else
  echo restoring
fi
