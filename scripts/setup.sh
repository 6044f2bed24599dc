#!/usr/bin/env bash
# Installs what hbdeploy's demo and tests need on Debian/Ubuntu, as root, when it is missing:
# nix (Debian's nix-bin), OpenSSH's server and client, util-linux (unshare, nsenter), sudo.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root: the lab mounts a private /nix per simulated host" >&2
  exit 2
fi

missing=()
command -v nix >/dev/null 2>&1 || missing+=(nix-bin)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
# sudo: the lab's non-root deploy users escalate with it.
[ -x /usr/bin/sudo ] || missing+=(sudo)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install a Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 2
fi
