#!/usr/bin/env bash
# The whole test suite: unit tests, CLI snapshots, and the lab tests that deploy to simulated
# hosts with real nix and real sshd.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
exec cargo test --locked --workspace --all-targets "$@"
