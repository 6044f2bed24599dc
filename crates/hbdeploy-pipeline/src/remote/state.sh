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
# Every generation in one process however many the host keeps: its link, the link's mtime and
# its target (nix writes the absolute store path). -H: the directory itself may be a symlink.
find -H /nix/var/nix/profiles -maxdepth 1 -name 'system-*-link' -type l -printf 'gen %p %Ts %l\n' \
  2>/dev/null
[ -d /run/systemd/system ] && echo systemd
# Deployments recorded as pending (armed, never settled; see watchdog.sh).
for r in /nix/var/hbdeploy/pending-*; do
  [ -f "$r" ] && echo "pending ${r##*/pending-}"
done
true
