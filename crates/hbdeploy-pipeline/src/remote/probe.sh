#!/bin/sh
# Whether $1 is a NixOS system to switch to (`missing`: it is not in the store at all, e.g.
# garbage-collected), and whether the host runs systemd.
if [ -x "$1/bin/switch-to-configuration" ]; then
  echo nixos
elif [ -e "$1" ]; then
  echo not-nixos
else
  echo missing
fi
[ -d /run/systemd/system ] && echo systemd
true
