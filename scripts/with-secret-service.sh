#!/usr/bin/env bash
# Runs a command inside a private D-Bus session that has gnome-keyring's Secret Service,
# unlocked non-interactively, with keyrings in a temporary directory (never the user's).
# Used by test.sh so the credential-store tests talk to a real Secret Service.
#   bash scripts/with-secret-service.sh cargo test
set -euo pipefail
if [ -z "${HOSTPULSE_IN_SECRET_SESSION:-}" ]; then
  export HOSTPULSE_IN_SECRET_SESSION=1
  exec dbus-run-session -- bash "$0" "$@"
fi
keyrings="$(mktemp -d)"
printf 'hostpulse-test' | XDG_DATA_HOME="$keyrings" gnome-keyring-daemon --foreground --unlock --components=secrets \
  >"$keyrings/daemon.log" 2>&1 &
daemon=$!
cleanup() { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; rm -rf "$keyrings"; }
trap cleanup EXIT
for _ in $(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.ListNames \
    2>/dev/null | grep -q org.freedesktop.secrets && break
  sleep 0.1
done
"$@"
