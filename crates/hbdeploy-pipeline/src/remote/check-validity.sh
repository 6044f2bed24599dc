#!/bin/sh
# Prints which of the store paths given as arguments the host's store lacks; the caller puts the
# path most likely to be new first (a closure's top). Only `nix-store` ever answers "nothing is
# missing": when the first path is on disk, it checks them all. When the first path is not on
# disk, the store lacks it, so something must be sent anyway, and the others are counted without
# starting nix-store (about 35 ms of CPU per host): a path not on disk is missing, one on disk is
# taken as present. `nix copy` then finds out exactly what to send; only a path on disk that the
# store does not count as valid (left by an interrupted copy) would be left out of the count.
# `-L` too: a store path may be a symlink, and one whose target is gone is still there.
if [ -e "$1" ] || [ -L "$1" ]; then
  exec nix-store --check-validity --print-invalid "$@"
fi
for path in "$@"; do
  [ -e "$path" ] || [ -L "$path" ] || printf '%s\n' "$path"
done
