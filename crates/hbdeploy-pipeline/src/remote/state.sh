#!/bin/sh
# Prints what a host runs as `key value...` lines; changes nothing. Missing links print nothing
# useful and are read as absent. The kernel files are resolved with `readlink -e`, which prints
# nothing for a file that does not exist (`-f` would print a path a missing file never had).
profile=/nix/var/nix/profiles/system
for l in /run/current-system /run/booted-system; do
  echo "link $l $(readlink -f "$l" 2>/dev/null)"
done
echo "profile $(readlink "$profile" 2>/dev/null)"
for f in kernel initrd kernel-modules; do
  echo "boot $f $(readlink -e "/run/booted-system/$f" 2>/dev/null) $(readlink -e "/run/current-system/$f" 2>/dev/null)"
done
for l in "$profile"-*-link; do
  [ -L "$l" ] && echo "gen $l $(stat -c %Y "$l") $(readlink -f "$l")"
done
[ -d /run/systemd/system ] && echo systemd
# Deployments recorded as pending (armed, never settled; see watchdog.sh).
for r in /nix/var/hbdeploy/pending-*; do
  [ -f "$r" ] && echo "pending ${r##*/pending-}"
done
true
