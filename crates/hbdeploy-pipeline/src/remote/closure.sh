#!/bin/sh
# Prints the closure of the store path $1 in the host's store with each path's size: the paths,
# one a line, then the line `hbdeploy-sizes`, then their sizes in the same order. Changes
# nothing.
set -eu
paths=$(nix-store --query --requisites "$1")
printf '%s\n' "$paths"
echo hbdeploy-sizes
# One argument per path: store paths hold no blanks.
# shellcheck disable=SC2086
nix-store --query --size $paths
