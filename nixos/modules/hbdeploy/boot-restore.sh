#!/bin/sh
# hbdeploy's boot-time restore (the NixOS option services.hbdeploy.magicRollback, see
# default.nix beside this file): magic rollback made to cover a reboot.
#
# hbdeploy's watchdog records every deployment it guards on persistent storage before the
# activation starts: /nix/var/hbdeploy/pending-TOKEN holds the boot id it was armed in, the
# change that restores the previous generation (`restore PATH GOAL NUMBER`, as hbdeploy's
# switch.sh takes it; `keep PATH test` for `test`), and once the activation has moved the
# profile, the generation it made (`system-N-link`). A confirmation or a finished restore
# removes the record. A record armed in an earlier boot was never settled: the host rebooted
# (or crashed) before the deployer could confirm the new system, and the watchdog died with
# the boot. This script, run once at boot, settles it as the watchdog would have: the profile
# goes back to generation NUMBER, the unconfirmed generation is deleted and the previous system
# is activated. A profile that points at neither (it moved since) is left alone. `test`
# deployments need nothing: a reboot already left them. Each restore it tried is noted in
# /run/hbdeploy/boot-restored (`restored|failed TOKEN NUMBER PATH`, for this boot only), where a
# checked reboot (`hbdeploy reboot`, `apply --reboot`) reads it to report what the host did.
# Environment (for tests): HBDEPLOY_PENDING_DIR, HBDEPLOY_PROFILE.
set -u
pending=${HBDEPLOY_PENDING_DIR:-/nix/var/hbdeploy}
profile=${HBDEPLOY_PROFILE:-/nix/var/nix/profiles/system}
boot=$(cat /proc/sys/kernel/random/boot_id)
noted=${HBDEPLOY_RESTORED:-/run/hbdeploy/boot-restored}
# hbdeploy's deployment lock: no deployment starts on the host while this restores.
mkdir -p /run/hbdeploy
exec 9>>/run/hbdeploy/lock
flock 9
status=0
for record in "$pending"/pending-*; do
  [ -f "$record" ] || continue
  token=${record##*/pending-}
  armed=$(sed -n 1p "$record")
  # Armed in this boot: its watchdog lives and decides.
  [ "$armed" != "$boot" ] || continue
  change=$(sed -n 2p "$record")
  made=$(sed -n 3p "$record")
  # Store paths, numbers and goals hold no blanks: the words split as written.
  # shellcheck disable=SC2086
  set -- $change
  op=${1:-} path=${2:-} goal=${3:-} number=${4:-}
  if [ "$op" != restore ]; then
    echo "hbdeploy: deployment $token ($op) was never confirmed; a reboot already undid it"
    rm -f "$record"
    continue
  fi
  cur=$(readlink "$profile")
  if [ "$cur" != "system-$number-link" ] && [ "$cur" != "$made" ]; then
    echo "hbdeploy: deployment $token was never confirmed, but the system profile has moved since (it points at $cur): left alone"
    rm -f "$record"
    continue
  fi
  echo "hbdeploy: deployment $token was never confirmed before the host rebooted: restoring generation $number ($path)"
  if [ "$cur" != "system-$number-link" ]; then
    n=${cur#system-}
    n=${n%-link}
    if ! nix-env -p "$profile" --switch-generation "$number" ||
      ! nix-env -p "$profile" --delete-generations "$n"; then
      echo "hbdeploy: moving the system profile back failed; the record stays for the next boot" >&2
      echo "failed $token $number $path" >>"$noted"
      status=1
      continue
    fi
  fi
  if "$path/bin/switch-to-configuration" "$goal"; then
    rm -f "$record"
    echo "hbdeploy: restored generation $number"
    echo "restored $token $number $path" >>"$noted"
  else
    echo "hbdeploy: switch-to-configuration $goal of generation $number failed" >&2
    rm -f "$record"
    echo "failed $token $number $path" >>"$noted"
    status=1
  fi
done
exit "$status"
