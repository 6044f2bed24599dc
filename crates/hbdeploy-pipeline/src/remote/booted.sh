#!/bin/sh
# After a reboot: where systemd runs, waits (at most $1 seconds) until the boot has finished,
# so that what runs late in it (the boot-time restore of hbdeploy's NixOS module) has run. Then
# prints the boot's id, the booted and running systems, and what the boot-time restore did in
# this boot (its lines in /run/hbdeploy/boot-restored). Changes nothing.
if [ -d /run/systemd/system ]; then
  echo "state $(timeout "$1" systemctl is-system-running --wait 2>/dev/null)"
fi
echo "boot-id $(cat /proc/sys/kernel/random/boot_id)"
echo "booted $(readlink -f /run/booted-system 2>/dev/null)"
echo "current $(readlink -f /run/current-system 2>/dev/null)"
if [ -f /run/hbdeploy/boot-restored ]; then
  while IFS= read -r line; do echo "boot-restore $line"; done </run/hbdeploy/boot-restored
fi
true
