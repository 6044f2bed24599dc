#!/bin/sh
# Prints which of the store paths PATHS (one per line) the host's store lacks; the caller puts
# the path most likely to be new first (a closure's top). Run on a channel of its own, the paths
# come on stdin, not as an argument: a real system's closure holds thousands, more than the
# 128 KiB that one argument (the command line sshd hands the login shell) may hold. They are read
# whole by one `cat`: the shell's `read` takes a byte at a time from a pipe, a system call per
# byte (about 50 ms of CPU for the 100 KiB of a real system's closure). A lock's holder gets them
# as the argument PATHS instead, inside the request it reads (`set --`, no command line of a
# program's): no `cat`, and no input for the holder to read into a file with a `head`.
# Only `nix-store` ever answers "nothing is missing": when the first path is on disk, it checks
# them all (`xargs` splits them into command lines the kernel takes). When the first path is not
# on disk, the store lacks it, so something must be sent anyway, and the others are counted
# without starting nix-store (about 35 ms of CPU per host): a path not on disk is missing, one on
# disk is taken as present. `nix copy` then finds out exactly what to send; only a path on disk
# that the store does not count as valid (left by an interrupted copy) would be left out of the
# count.
# `-L` too: a store path may be a symlink, and one whose target is gone is still there.
# It has no `timeout` of its own (a lock's holder runs it in its own shell): only `nix-store`,
# which may wait for the store's locks, is stopped after LIMIT seconds, with `xargs`.
# Arguments: LIMIT [PATHS].
limit=$1
if [ "$#" -ge 2 ]; then
  paths=$2
else
  paths=$(cat)
fi
[ -n "$paths" ] || exit 0
first=${paths%%
*}
if [ -e "$first" ] || [ -L "$first" ]; then
  printf '%s\n' "$paths" | timeout -k 5 "$limit" xargs nix-store --check-validity --print-invalid
  exit
fi
# One path a line; store paths hold no blanks, but may hold `?`: no globbing.
set -f
IFS='
'
# shellcheck disable=SC2086
set -- $paths
printf '%s\n' "$1"
shift
for path; do
  [ -e "$path" ] || [ -L "$path" ] || printf '%s\n' "$path"
done
