#!/bin/sh
# Prints what a host runs as `key value...` lines; changes nothing. Missing links print nothing
# useful and are read as absent. Two processes however many generations the host keeps: one
# `readlink -e` resolves the running and booted systems and their kernel files — each one that
# exists (a file that does not prints nothing), its answers in the order asked — and one `find`
# lists the profile and every generation.
# Each line ends with the escape in `sep` (printf's and find's): a newline (`\n`, unset), or a
# tab (`\t`) where a lock's holder runs this in its own shell, so that its lines go straight
# into the holder's one-line answer (see lock.sh) with nothing to capture and join.
set -u
e=${sep:-'\n'}
asked=
for p in /run/current-system /run/booted-system \
  /run/booted-system/kernel /run/current-system/kernel \
  /run/booted-system/initrd /run/current-system/initrd \
  /run/booted-system/kernel-modules /run/current-system/kernel-modules; do
  [ -e "$p" ] && asked="$asked $p"
done
resolved=
# shellcheck disable=SC2086 # the paths asked have no spaces
[ -z "$asked" ] || resolved=$(readlink -e $asked 2>/dev/null)
current='' booted='' bk='' ck='' bi='' ci='' bm='' cm=''
if [ -n "$resolved" ]; then
  # shellcheck disable=SC2086
  set -- $asked
  while IFS= read -r target && [ "$#" -gt 0 ]; do
    case $1 in
      /run/current-system) current=$target ;;
      /run/booted-system) booted=$target ;;
      /run/booted-system/kernel) bk=$target ;;
      /run/current-system/kernel) ck=$target ;;
      /run/booted-system/initrd) bi=$target ;;
      /run/current-system/initrd) ci=$target ;;
      /run/booted-system/kernel-modules) bm=$target ;;
      /run/current-system/kernel-modules) cm=$target ;;
    esac
    shift
  done <<END
$resolved
END
fi
printf "link /run/current-system %s$e" "$current"
printf "link /run/booted-system %s$e" "$booted"
printf "boot kernel %s %s$e" "$bk" "$ck"
printf "boot initrd %s %s$e" "$bi" "$ci"
printf "boot kernel-modules %s %s$e" "$bm" "$cm"
# The profile's link and every generation: its link, the link's mtime and its target (nix
# writes the absolute store path). -H: the directory itself may be a symlink.
find -H /nix/var/nix/profiles -maxdepth 1 -type l \
  \( -name system -printf "profile %l$e" -o -name 'system-*-link' -printf "gen %p %Ts %l$e" \) \
  2>/dev/null
[ -d /run/systemd/system ] && printf "%s$e" systemd
# Deployments recorded as pending (armed, never settled; see watchdog.sh).
for r in /nix/var/hbdeploy/pending-*; do
  [ -f "$r" ] && printf "pending %s$e" "${r##*/pending-}"
done
true
