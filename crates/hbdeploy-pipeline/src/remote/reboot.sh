#!/bin/sh
# Reboots the host for a checked reboot (`hbdeploy reboot`, `apply --reboot`). Prints this
# boot's id (the deployer knows the host came back from a new boot when it differs), the system
# the profile points at (what the boot loader's default entry boots) and the running one, then
# has the reboot
# started a second later, detached from this session: the command ends, and its SSH channel
# closes cleanly, before the host goes down.
set -eu
echo "boot-id $(cat /proc/sys/kernel/random/boot_id)"
echo "profile $(readlink -f /nix/var/nix/profiles/system 2>/dev/null || true)"
echo "current $(readlink -f /run/current-system 2>/dev/null || true)"
if [ -d /run/systemd/system ]; then
  systemd-run --quiet --collect --unit="hbdeploy-reboot-$$" --on-active=1 systemctl reboot
else
  setsid sh -c 'sleep 1; exec reboot' </dev/null >/dev/null 2>&1 &
fi
echo started
