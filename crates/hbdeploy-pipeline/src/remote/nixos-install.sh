#!/bin/sh
# `hbdeploy install`: installs SYSTEM (already in the store) onto the file systems the disko
# script mounted at ROOT, without asking for a root password or copying channels.
# Arguments: SYSTEM_BIN ROOT SYSTEM.
PATH="$PATH:$1" exec nixos-install --no-root-passwd --no-channel-copy --root "$2" --system "$3"
