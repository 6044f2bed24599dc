#!/usr/bin/env bash
# The benchmark of issues 9 and 16: starts lab hosts (simulated NixOS hosts on this machine,
# systemd containers and namespaces) and measures `hbdeploy apply --all` — the deployment alone,
# closures built beforehand, against plain nix copy + ssh with hbdeploy's SSH algorithms and with
# OpenSSH's defaults; warm; and with the build included — for a sweep of host counts. Installs
# what it needs, builds in release mode, then runs hbdeploy-bench with the arguments given, e.g.:
#   bash scripts/bench.sh                                   # --lab systemd,namespace --hosts 1,3,5,20,50,100 --runs 5
#   bash scripts/bench.sh --lab namespace --hosts 100 --runs 1 --no-build-included
#   bash scripts/bench.sh --json bench.json --markdown bench.md
#   bash scripts/bench.sh --eval                           # evaluation at fleet scale (issue 17)
# Results and how to read them: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --quiet --locked --release --bin hbdeploy
cargo build --quiet --locked --release -p hbdeploy-lab --bin hbdeploy-bench
exec target/release/hbdeploy-bench --hbdeploy target/release/hbdeploy "$@"
