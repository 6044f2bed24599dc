#!/bin/sh
# Builds the derivation $1 in the host's store (a host that builds its own system) and prints
# its output paths, one a line.
exec nix-store --realise "$1"
