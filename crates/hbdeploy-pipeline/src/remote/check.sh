#!/bin/sh
# Runs a health check's command (the user's own, from fleet.toml) within SECS seconds: coreutils'
# `timeout` puts it in a process group of its own and, when the limit expires, signals the whole
# group (TERM, then KILL after KILL seconds), so a hanging check leaves no process behind on the
# host, its children included (exit 124). Dropping the SSH channel alone would leave them running.
# Arguments: KILL SECS COMMAND.
exec timeout -k "$1" "$2" sh -c "$3"
