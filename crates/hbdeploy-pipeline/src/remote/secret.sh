#!/bin/sh
# Writes a secret, read from stdin, to $1, owned by $2:$3 with mode $4 (octal), atomically: a
# temporary file in the same directory gets its owner and mode first, then the content; it is
# synced and renamed over $1, so $1 is the old file or the whole new one, never a part, and the
# content is never readable by anyone else on the way. Prints nothing of the content (which is
# never on a command line). Before anything is written, an owner or group the host does not know
# is reported as `hbdeploy-secret unknown-owner` (exit 3) or `hbdeploy-secret unknown-group`
# (exit 4); a directory at $1 as `hbdeploy-secret dest-is-directory` (exit 5).
set -u
dest=$1 owner=$2 group=$3 mode=$4
if ! id -u "$owner" >/dev/null 2>&1; then
  echo "hbdeploy-secret unknown-owner"
  exit 3
fi
if command -v getent >/dev/null 2>&1 && ! getent group "$group" >/dev/null 2>&1; then
  echo "hbdeploy-secret unknown-group"
  exit 4
fi
if [ -d "$dest" ] && [ ! -L "$dest" ]; then
  echo "hbdeploy-secret dest-is-directory"
  exit 5
fi
dir=${dest%/*}
[ -n "$dir" ] || dir=/
umask 077
# Directories on the way are created readable by all (the file's own mode protects it), so that
# an owner who is not root can reach its secret.
if [ ! -d "$dir" ]; then
  (umask 022 && mkdir -p "$dir") || exit 1
fi
tmp=$(mktemp "$dir/.hbdeploy-secret.XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
chown "$owner" "$tmp" || exit 1
if ! chgrp "$group" "$tmp"; then
  echo "hbdeploy-secret unknown-group"
  exit 4
fi
chmod "$mode" "$tmp" || exit 1
cat >"$tmp" || exit 1
sync "$tmp" || exit 1
mv -fT "$tmp" "$dest" || exit 1
trap - EXIT
sync "$dir" 2>/dev/null
true
