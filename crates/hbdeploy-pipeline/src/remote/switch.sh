#!/bin/sh
# One change of a host's system, run as one detached job (by run.sh): move the system profile,
# then run the system's switch-to-configuration. How it ended goes to DIR/JOB.end (the exit
# code, `profile-failed:CODE` or `profile-moved:LINK`), the profile's generation after the move
# to DIR/JOB.generation.
# Arguments: DIR JOB OP PATH GOAL [NUMBER]; OP is
#   set         the profile gets a new generation for PATH (apply); it is recorded in
#               DIR/generation as the generation this deployment made,
#   generation  the profile goes to generation NUMBER (rollback),
#   restore     the profile goes back to generation NUMBER and the generation it pointed at is
#               deleted, so an unwanted system is not left as the newest (automatic restore,
#               watchdog, settling) — only while the profile still points at the generation
#               this deployment made or at NUMBER: a profile that moved since is left alone;
#               once done, the deployment's pending record (see watchdog.sh) goes,
#   keep        the profile is left alone (`test`).
set -u
dir=$1 job=$2 op=$3 path=$4 goal=$5 number=${6:-}
profile=/nix/var/nix/profiles/system
ended() {
  echo "$1" >"$dir/$job.end"
  exit "$2"
}
case "$op" in
  set)
    nix-env -p "$profile" --set "$path" || ended "profile-failed:$?" 1
    ;;
  generation)
    nix-env -p "$profile" --switch-generation "$number" || ended "profile-failed:$?" 1
    ;;
  restore)
    cur=$(readlink "$profile")
    made=
    { read -r made <"$dir/generation"; } 2>/dev/null
    if [ "$cur" != "system-$number-link" ] && [ "$cur" != "$made" ]; then
      echo "the system profile has moved since this deployment (it points at $cur): left alone"
      ended "profile-moved:$cur" 3
    fi
    cur=${cur#system-}
    cur=${cur%-link}
    nix-env -p "$profile" --switch-generation "$number" || ended "profile-failed:$?" 1
    if [ "$cur" != "$number" ]; then
      nix-env -p "$profile" --delete-generations "$cur" || ended "profile-failed:$?" 1
    fi
    ;;
  keep) ;;
  *)
    echo "unknown profile operation: $op" >&2
    ended "profile-failed:2" 2
    ;;
esac
if [ "$op" != keep ]; then
  # The generation the profile points at now, named without a program to read the link: NUMBER
  # after a switch to it; after `--set` the newest one, which nix has just made (one past the
  # last) or reused (the last, when it already held PATH). Only a profile with no generation
  # to be found (none can be after a `--set` that succeeded) is read with `readlink`.
  link=system-$number-link
  if [ "$op" = set ]; then
    newest=0
    for gen in "$profile"-*-link; do
      n=${gen#"$profile"-}
      n=${n%-link}
      case $n in '' | *[!0-9]*) continue ;; esac
      [ "$n" -le "$newest" ] || newest=$n
    done
    link=system-$newest-link
    [ "$newest" != 0 ] || link=$(readlink "$profile")
  fi
  echo "$link" >"$dir/$job.generation"
  if [ "$op" = set ]; then
    echo "$link" >"$dir/generation"
    # The deployment's pending record (if a watchdog guards it) learns it too.
    record="/nix/var/hbdeploy/pending-${dir##*/}"
    [ ! -f "$record" ] || echo "$link" >>"$record"
  fi
fi
"$path/bin/switch-to-configuration" "$goal"
code=$?
[ "$op" != restore ] || rm -f "/nix/var/hbdeploy/pending-${dir##*/}"
ended "$code" "$code"
