#!/usr/bin/env bash
# Sets up only what the app needs (scripts/setup-app.sh: the C libraries, WebKitGTK, the app
# indicator, Rust), builds and starts the HostPulse desktop app: it opens in the tray, and on first run shows its settings window
# (paste a Quix streaming token there). Needs a desktop session (DISPLAY or WAYLAND_DISPLAY).
# For a server without a desktop, see scripts/run-headless.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-app.sh
say "building the HostPulse desktop app (release)"
cargo build --release -p hostpulse-app
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "no desktop session (DISPLAY/WAYLAND_DISPLAY unset): run scripts/run-headless.sh on servers" >&2
  exit 1
fi
exec ./target/release/hostpulse-app "$@"
