#!/bin/sh
# Takes the host's deployment lock and holds it for as long as the deployer's channel lives:
# `flock` on fd 9, then `read` waits for the channel's stdin to close while this shell keeps fd 9.
# When the deployer lets go (or its connection ends), still holding the lock, it removes the
# directories of settled deployments — nothing of theirs running, and decided or never armed —
# keeping the last activation's log: the host keeps at most a few MiB of hbdeploy's files however
# many deployments it sees.
# Once it holds the lock it answers on one line, so that the deployer learns in the same round
# trip what it needs before it changes anything: `locked`, a tab, `settle` if anything of an
# earlier deployment may still act on the host (a job of one still running, a watchdog not yet
# decided or still alive, a record of one armed in an earlier boot: the deployer then runs
# settle.sh, which finds these same things) or `clear` if nothing can, a tab, and the output of
# the script given as $2 (state.sh), each of its lines ended by a tab. Read under the lock,
# none of it can change before the deployer lets go — but for a watchdog, which is why an
# undecided or live one says `settle`.
# $1: who holds it, shown to the next deployer that finds it busy. $2 (optional): a script
# whose output is the rest of the answer. It only reads (links and directories), and runs in
# this shell itself: no `timeout` and no shell of its own to start (a read that hung would keep
# the lock until it ended, and changes nothing; the deployer gives up on the answer after its
# step limit all the same).
set -u
run=/run/hbdeploy
[ -d "$run" ] || mkdir -p "$run" || exit 1
# What it writes is root's alone (the holder's name, a request's input), as a deployment's files
# are (prepare.sh).
umask 077
exec 9>>"$run/lock" || exit 1
info="$run/lock.info"
locked=0
if flock -n 9; then
  locked=1
else
  # Busy. The holder may have the lock but not its name written yet, or be letting go of it
  # (its name already removed): wait a moment for either.
  n=0
  holder=
  { read -r holder <"$info"; } 2>/dev/null
  while [ -z "$holder" ] && [ "$n" -lt 20 ]; do
    sleep 0.05
    n=$((n + 1))
    if flock -n 9; then
      locked=1
      break
    fi
    holder=
    { read -r holder <"$info"; } 2>/dev/null
  done
  if [ "$locked" = 0 ]; then
    echo "busy $holder"
    exit 0
  fi
fi
# Written whole and renamed into place, so a deployer that finds the lock busy never reads half
# of it; removed before the lock is let go, so it never names an earlier holder.
# One short write: a reader finds the name whole, or nothing yet (and waits a moment, above).
printf '%s\n' "$1" >"$info"
# Whether the pid in the file $1 is a live process still running the deployment directory $2's
# scripts (pids are reused): its command line, read by the shell itself (it drops the NULs
# between the arguments), holds "$2/".
runs() {
  pid=
  { read -r pid <"$1"; } 2>/dev/null
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  cmdline=
  { IFS= read -r cmdline <"/proc/$pid/cmdline"; } 2>/dev/null
  case $cmdline in *"$2/"*) return 0 ;; esac
  return 1
}
settle=clear
for dir in "$run"/*/; do
  dir=${dir%/}
  if [ -s "$dir/watchdog.pid" ] && [ ! -e "$dir/decided" ]; then
    settle=settle
  fi
  for pidfile in "$dir"/*.pid; do
    runs "$pidfile" "$dir" && settle=settle
  done
done
for record in /nix/var/hbdeploy/pending-*; do
  [ -f "$record" ] || continue
  [ -d "$run/${record##*/pending-}" ] || settle=settle
done
printf 'locked\t%s\t' "$settle"
if [ "$#" -ge 2 ]; then
  # Its lines end with a tab instead of a newline (`sep`; no line of it holds a tab) and go
  # straight into the answer. Run in this shell, not in a command substitution's (one process
  # fewer to start): its variables must not be ones this script goes on to use.
  # shellcheck disable=SC2034 # read by state.sh, which the eval runs
  sep='\t'
  eval "$2"
fi
echo
# While it holds, it serves the deployer's requests (`Held::ask`), so that the steps under the lock
# cost no channel or login shell of their own: `ask NONCE CLEN ILEN`, then CLEN bytes of a command
# line, whose last line is `# end NONCE`, and ILEN bytes of its input. It runs the command as root,
# under the lock, with that input (the rest of it read and dropped, so the next request starts
# where it should), then prints `hbdeploy-asked-NONCE EXIT` on a line of its own on stdout and on
# stderr. A command cut short (no `# end` line: the deployer went away mid-request) is never run;
# it lets go instead, as it does at the end of stdin. Any other line is ignored.
# The input is read into a file of the holder's own ($run/ask.in, root's alone, emptied after
# each request and removed on letting go): one `head` and a redirection, where a pipe cost a
# subshell to run the command in and a `cat` to drop what it left unread.
nl='
'
input="$run/ask.in"
while read -r word nonce clen ilen; do
  [ "$word" = ask ] || continue
  case "$clen$ilen" in '' | *[!0-9]*) continue ;; esac
  command=$(head -c "$clen")
  case $command in
    *"$nl# end $nonce") ;;
    *) break ;;
  esac
  # In a subshell (no new shell to start), without fd 9: a job the command starts detached
  # (`setsid`) must not hold the lock.
  if [ "$ilen" -gt 0 ]; then
    head -c "$ilen" >"$input" || break
    (eval "$command") <"$input" 9>&-
    code=$?
    : >"$input"
  else
    (eval "$command") </dev/null 9>&-
    code=$?
  fi
  printf '\nhbdeploy-asked-%s %s\n' "$nonce" "$code"
  printf '\nhbdeploy-asked-%s %s\n' "$nonce" "$code" >&2
done
# Removed together, with one `rm`.
set -- "$info" "$input"
for dir in "$run"/*/; do
  dir=${dir%/}
  [ -f "$dir/previous" ] || [ -f "$dir/switch.sh" ] || continue
  if [ -e "$dir/watchdog.pid" ] && [ ! -e "$dir/decided" ]; then
    continue
  fi
  busy=0
  for pidfile in "$dir"/*.pid; do
    runs "$pidfile" "$dir" && busy=1
  done
  [ "$busy" = 0 ] || continue
  if [ -s "$dir/logs/activate.log" ]; then
    mv -f "$dir/logs/activate.log" "$run/last-activation.log"
  fi
  set -- "$@" "$dir"
done
rm -rf "$@"
