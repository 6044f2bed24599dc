#!/bin/sh
# Whether $1 is a NixOS system to switch to, and whether the host runs systemd.
if [ -x "$1/bin/switch-to-configuration" ]; then echo nixos; else echo not-nixos; fi
[ -d /run/systemd/system ] && echo systemd
true
