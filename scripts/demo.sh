#!/usr/bin/env bash
# The demo: starts a lab of three simulated NixOS hosts (laptop, desktop, server) on this
# machine and runs `hbdeploy apply --all` against it, with live progress and the result table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --quiet --locked --bins --examples
exec target/debug/examples/demo
