#!/usr/bin/env bash
# Makes this Debian/Ubuntu machine ready for hbdeploy's demo, tests and benchmark, as root.
# Sourced by scripts/demo.sh, scripts/test.sh and scripts/bench.sh; safe to run again: it only adds
# what is missing and never rewrites what is there.
#
# What it changes on the machine:
# - apt packages, when missing: nix-bin (nix), openssh-server and openssh-client, openssl,
#   util-linux (unshare, nsenter), sudo, git, ca-certificates (cargo fetches crates over HTTPS),
#   gcc and libc6-dev (the C linker Rust needs), systemd-container and debootstrap (the lab
#   of hosts that run systemd), and shellcheck (the tests check the scripts run on hosts).
# - nix's own set-up, which Debian's nix-bin leaves to the package nix-setup-systemd (not needed
#   here: no nix-daemon is started on this machine; root uses the store directly):
#   /nix/var/nix; /etc/nix/nix.conf if there is none (`sandbox = false`, as Debian ships it: the
#   lab's toy systems build with the machine's /bin/sh); and the build users nix runs builds as
#   (group nixbld, users nixbld1..10, as nix-setup-systemd makes them) when the group named by
#   `build-users-group` does not exist. An existing nix.conf is never changed.
# - /etc/hosts with localhost, if there is none (the lab binds each host's own over it).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root: the lab mounts a private /nix per simulated host" >&2
  exit 2
fi

missing=()
need() { # need COMMAND-OR-PATH PACKAGE
  case "$1" in
    /*) [ -e "$1" ] || missing+=("$2") ;;
    *) command -v "$1" >/dev/null 2>&1 || missing+=("$2") ;;
  esac
}
need nix nix-bin
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need ssh-keygen openssh-client
need openssl openssl
need unshare util-linux
need nsenter util-linux
need /usr/bin/sudo sudo # the lab's non-root deploy users escalate with it
need git git
need /etc/ssl/certs/ca-certificates.crt ca-certificates
need cc gcc
need /usr/include/stdlib.h libc6-dev
need systemd-nspawn systemd-container
need debootstrap debootstrap
need shellcheck shellcheck # the tests check the scripts hbdeploy runs on hosts
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get update -qq; then
    echo "setup: apt-get update failed: the package archive cannot be reached" >&2
    exit 2
  fi
  # shellcheck disable=SC2046 # one word per package
  if ! apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null; then
    echo "setup: apt-get install ${missing[*]} failed" >&2
    exit 2
  fi
fi

# nix: its state directory, a nix.conf, and the build users its nix.conf names.
mkdir -p /nix/var/nix /etc/nix
if [ ! -e /etc/nix/nix.conf ]; then
  echo "setup: writing /etc/nix/nix.conf" >&2
  cat >/etc/nix/nix.conf <<'EOF'
# Written by hbdeploy's scripts/setup.sh, as Debian's nix-setup-systemd would: builds run as the
# nixbld users, without nix's sandbox.
build-users-group = nixbld
sandbox = false
EOF
fi
# The group nix builds as: `build-users-group` from nix.conf, nixbld when it is not set.
group=$(sed -n 's/^[[:space:]]*build-users-group[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/p' /etc/nix/nix.conf | tail -n 1)
if ! grep -q '^[[:space:]]*build-users-group[[:space:]]*=' /etc/nix/nix.conf; then
  group=nixbld
fi
if [ -n "$group" ] && ! getent group "$group" >/dev/null; then
  echo "setup: creating nix's build users (group $group, users ${group}1..10)" >&2
  groupadd --system "$group"
  for n in $(seq 1 10); do
    id "$group$n" >/dev/null 2>&1 ||
      useradd --system --comment "Nix build user $n" --home-dir /var/empty --no-create-home \
        --gid "$group" --groups "$group" --no-user-group --shell /usr/sbin/nologin "$group$n"
  done
fi

# Every lab host gets its own /etc/hosts, bind-mounted over the machine's: a minimal root has none.
if [ ! -e /etc/hosts ]; then
  echo "setup: writing /etc/hosts (localhost)" >&2
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >/etc/hosts
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install a Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 2
fi
