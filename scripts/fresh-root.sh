#!/usr/bin/env bash
# Proves the README's two set-up commands on an empty machine: makes a minimal Debian root
# (debootstrap --variant=minbase: no nix, no sshd, no C compiler, no git), puts a clean clone of
# this repository's HEAD in it, makes this machine's Rust toolchain available inside (read-only
# bind mount: the one thing the README asks a user to bring), and runs, inside, as root:
#   bash scripts/demo.sh && bash scripts/test.sh
# It fails when either fails, or when a package registry cannot be reached.
#
#   bash scripts/fresh-root.sh                 # Debian 12 (bookworm)
#   bash scripts/fresh-root.sh --suite trixie  # Debian 13
#   bash scripts/fresh-root.sh -- --test it apply:: # arguments after -- go to scripts/test.sh
#
# The minimal root is made once and cached outside the repository, in
# ${HBDEPLOY_FRESH_ROOT_CACHE:-/var/cache/hbdeploy/fresh-root}/SUITE (about 150 MB); every run
# starts from an untouched copy of it (an overlay whose upper layer is thrown away). Everything
# runs in a private mount and PID namespace (unshare --kill-child): when the run ends, fails or is
# killed, every process in it dies and every mount it made goes with the namespace; the run's
# directory is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

suite=bookworm
# The archive: debootstrap's own default for the suite, or HBDEPLOY_FRESH_ROOT_MIRROR.
mirror=${HBDEPLOY_FRESH_ROOT_MIRROR:-}
test_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=$2; shift 2 ;;
    --) shift; test_args=("$@"); break ;;
    *) echo "fresh-root: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-root: run as root (it mounts and chroots)" >&2
  exit 2
fi
for tool in debootstrap unshare git rustc flock; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fresh-root: $tool is missing: run bash scripts/setup.sh first" >&2
    exit 2
  fi
done

cache=${HBDEPLOY_FRESH_ROOT_CACHE:-/var/cache/hbdeploy/fresh-root}
base=$cache/$suite
mkdir -p "$cache"

# The cached minimal root, made once (under a lock, in a temporary directory renamed into place,
# so a half-made root is never used).
exec 9>"$cache/$suite.lock"
flock 9
if [ ! -e "$base/.complete" ]; then
  echo "fresh-root: making a minimal $suite root in $base (once; a few minutes)" >&2
  rm -rf "$base.partial"
  if ! debootstrap --variant=minbase "$suite" "$base.partial" \
    ${mirror:+"$mirror"} >"$cache/$suite.log" 2>&1; then
    tail -n 20 "$cache/$suite.log" >&2
    echo "fresh-root: debootstrap $suite ${mirror:-(its default archive)} failed (full log: $cache/$suite.log)" >&2
    exit 1
  fi
  rm -rf "$base"
  touch "$base.partial/.complete"
  mv "$base.partial" "$base"
fi
flock -u 9

run=$(mktemp -d /var/tmp/hbdeploy-fresh-root.XXXXXX)
cleanup() { rm -rf "$run"; }
trap cleanup EXIT
mkdir -p "$run/upper" "$run/work" "$run/root"
git clone --quiet --no-hardlinks "$repo" "$run/upper/root/hbdeploy"
toolchain=$(rustc --print sysroot)

# Lab slots are claimed with file locks in one directory per machine: share the outer one, so labs
# inside never take the addresses of labs running outside at the same time.
slots=${TMPDIR:-/tmp}/hbdeploy-lab
mkdir -p "$slots"

inner=$(cat <<'EOF'
set -euo pipefail
r=$RUN/root
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" "$r"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=755 tmpfs "$r/run"
mkdir -p "$r/opt/rust" "$r/tmp/hbdeploy-lab"
mount --bind -o ro "$TOOLCHAIN" "$r/opt/rust"
mount --bind "$SLOTS" "$r/tmp/hbdeploy-lab"
# What this machine's network needs, as a new machine on it would have them: its resolver, and
# the certificate authorities its administrator added (ca-certificates trusts them once installed).
cp -L /etc/resolv.conf "$r/etc/resolv.conf"
if [ -d /usr/local/share/ca-certificates ]; then
  cp -a /usr/local/share/ca-certificates/. "$r/usr/local/share/ca-certificates/"
fi
cd "$r"
mkdir -p .outside
pivot_root . .outside
umount -l /.outside
rmdir /.outside
cd /root/hbdeploy
exec env -i HOME=/root TERM=dumb CI="${CI:-}" PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'set -e
    echo "fresh-root: inside: $(. /etc/os-release; echo "$PRETTY_NAME"); no nix: $(command -v nix || echo yes); no cc: $(command -v cc || echo yes)"
    echo "fresh-root: bash scripts/demo.sh"
    bash scripts/demo.sh
    # Set-up is idempotent: once done, running it again has nothing to do and says nothing.
    again=$(bash scripts/setup.sh 2>&1)
    if [ -n "$again" ]; then
      echo "fresh-root: scripts/setup.sh did something the second time: $again" >&2
      exit 1
    fi
    echo "fresh-root: bash scripts/test.sh $*"
    bash scripts/test.sh "$@"' fresh-root "$@"
EOF
)
echo "fresh-root: running the README's commands in an empty $suite root" >&2
status=0
RUN=$run BASE=$base TOOLCHAIN=$toolchain SLOTS=$slots \
  unshare --mount --pid --fork --kill-child --propagation private -- \
  bash -c "$inner" fresh-root ${test_args[@]+"${test_args[@]}"} || status=$?
if [ "$status" -ne 0 ]; then
  echo "fresh-root: FAILED (exit $status) in the empty $suite root" >&2
  exit "$status"
fi
echo "fresh-root: both README commands passed in an empty $suite root" >&2
