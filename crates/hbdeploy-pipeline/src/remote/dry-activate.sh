#!/bin/sh
# What activating the system $1 would do (`switch-to-configuration dry-activate`). It changes
# nothing, so it runs in the session: it needs neither the lock nor a detached job.
exec "$1/bin/switch-to-configuration" dry-activate
