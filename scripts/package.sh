#!/usr/bin/env bash
# Builds the desktop app's Debian package with the Tauri CLI (the npm package, prebuilt; no
# 20-minute `cargo install tauri-cli`). The .deb lands in target/release/bundle/deb/.
# On macOS or Windows the same command (without --bundles deb) builds the native bundles.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
command -v npx >/dev/null 2>&1 || { $SUDO apt-get install -y -qq nodejs npm >/dev/null; }
cd src-tauri
npx --yes @tauri-apps/cli@^2 build --bundles deb "$@"
ls -1 ../target/release/bundle/deb/*.deb
