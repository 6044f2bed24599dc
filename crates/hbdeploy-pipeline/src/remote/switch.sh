#!/bin/sh
# One change of a host's system, run as one detached job: move the system profile, then run
# the system's switch-to-configuration. Markers on stdout tell the deployer what happened.
# Arguments: DIR JOB OP PATH GOAL [NUMBER]; OP is
#   set         the profile gets a new generation for PATH (apply),
#   generation  the profile goes to generation NUMBER (rollback),
#   restore     the profile goes back to generation NUMBER and the generation it pointed at is
#               deleted, so an unwanted system is not left as the newest (automatic restore),
#   keep        the profile is left alone (`test`).
set -u
dir=$1 job=$2 op=$3 path=$4 goal=$5 number=${6:-}
profile=/nix/var/nix/profiles/system
echo "$$" >"$dir/$job.pid"
profile_failed() {
  echo "hbdeploy-profile-failed:$1"
  exit "$1"
}
case "$op" in
  set)
    nix-env -p "$profile" --set "$path" || profile_failed "$?"
    ;;
  generation)
    nix-env -p "$profile" --switch-generation "$number" || profile_failed "$?"
    ;;
  restore)
    cur=$(readlink "$profile")
    cur=${cur#system-}
    cur=${cur%-link}
    nix-env -p "$profile" --switch-generation "$number" || profile_failed "$?"
    if [ "$cur" != "$number" ]; then
      nix-env -p "$profile" --delete-generations "$cur" || profile_failed "$?"
    fi
    ;;
  keep) ;;
  *)
    echo "unknown profile operation: $op" >&2
    profile_failed 2
    ;;
esac
[ "$op" = keep ] || echo "hbdeploy-generation:$(readlink "$profile")"
"$path/bin/switch-to-configuration" "$goal"
code=$?
echo "hbdeploy-exit:$code"
exit "$code"
