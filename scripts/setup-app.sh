#!/usr/bin/env bash
# Installs what HostPulse needs to build and run, and nothing else, reusing what is there: the
# C libraries librdkafka links (TLS, SASL, zstd, zlib), a C toolchain, and the Rust toolchain;
# for the desktop app also WebKitGTK, the app indicator, librsvg and libxdo. With --headless
# (the `hostpulse` agent only), no desktop libraries. Sourced by run.sh, run-headless.sh and
# setup.sh (which adds the test tools); defines `say` and `SUDO` for them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages given that are not installed yet (one apt-get update at most).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    if [ -z "${HOSTPULSE_APT_UPDATED:-}" ]; then
      $SUDO apt-get update -qq
      export HOSTPULSE_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

APP_PACKAGES=(build-essential pkg-config libssl-dev libsasl2-dev libzstd-dev zlib1g-dev curl ca-certificates)
if [ "${1:-}" != "--headless" ]; then
  APP_PACKAGES+=(libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev file)
fi
apt_install "${APP_PACKAGES[@]}"

# The workspace's `rust-version`; an older cargo on PATH (Debian 12's is 1.63) cannot build it.
RUST_MIN=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml")
rust_new_enough() {
  local v
  v=$(rustc --version 2>/dev/null | awk '{print $2}') || return 1
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$RUST_MIN" "$v" | sort -V | head -1)" = "$RUST_MIN" ]
}
if ! command -v cargo >/dev/null 2>&1 || ! rust_new_enough; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! rust_new_enough; then
    if command -v rustup >/dev/null 2>&1; then
      say "updating the Rust toolchain to $RUST_MIN or newer (rustup)"
      rustup toolchain install stable --profile minimal && rustup default stable
    else
      say "installing the Rust toolchain (rustup; the system's is older than $RUST_MIN or missing)"
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
fi
