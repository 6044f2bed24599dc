#!/bin/sh
# Prints which of the store paths given as arguments the host's store lacks.
exec nix-store --check-validity --print-invalid "$@"
