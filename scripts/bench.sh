#!/usr/bin/env bash
# The benchmark of issue 9: starts lab hosts (simulated NixOS hosts on this machine) and measures
# `hbdeploy apply --all` cold and warm against plain nix build + nix copy + ssh, for a sweep of
# host counts. Installs what it needs, builds in release mode, then runs hbdeploy-bench with the
# arguments given, e.g.:
#   bash scripts/bench.sh                                   # --hosts 1,5,20,50 --runs 5
#   bash scripts/bench.sh --hosts 100 --runs 1
#   bash scripts/bench.sh --json bench.json --markdown bench.md
#   bash scripts/bench.sh --eval                           # evaluation at fleet scale (issue 17)
# Results and how to read them: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --quiet --locked --release --bin hbdeploy
cargo build --quiet --locked --release -p hbdeploy-lab --bin hbdeploy-bench
exec target/release/hbdeploy-bench --hbdeploy target/release/hbdeploy "$@"
