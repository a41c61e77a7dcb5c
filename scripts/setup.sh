#!/usr/bin/env bash
# Installs what HostPulse needs to build, run and test on Debian/Ubuntu, reusing whatever is
# already there: Debian packages, the Rust toolchain's fmt/clippy, the tansu broker (built from
# crates.io with storage engines), tauri-driver, and the pinned Python venvs (Quix SDK readers,
# the tray test's D-Bus host). Sourced by run.sh and test.sh; exports HOSTPULSE_TANSU,
# HOSTPULSE_TAURI_DRIVER, HOSTPULSE_QS057_PYTHON, HOSTPULSE_QS3_PYTHON, HOSTPULSE_DESKTOP_PYTHON.
set -euo pipefail

HOSTPULSE_CACHE="${HOSTPULSE_CACHE:-$HOME/.cache/hostpulse}"
mkdir -p "$HOSTPULSE_CACHE"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# Build tools and the C libraries librdkafka links (TLS, SASL/GSSAPI, zstd, zlib); procps for
# kill; clang and protoc for building tansu; for the tests: a D-Bus session bus and
# gnome-keyring (the Secret Service), stunnel4 and openssl (a TLS broker with a test CA).
# The desktop app: WebKitGTK, the app indicator, librsvg, libxdo; for its tests Xvfb, the
# WebKit WebDriver, X11 and image tools.
APT_PACKAGES=(build-essential pkg-config cmake libssl-dev libsasl2-dev libzstd-dev zlib1g-dev
  procps curl ca-certificates clang libclang-dev protobuf-compiler
  dbus gnome-keyring stunnel4 openssl
  libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev file
  xvfb libglib2.0-bin x11-utils imagemagick xdotool webkit2gtk-driver)
# Debian's python3 needs python3-venv for the SDK venvs; a pyenv Python brings its own.
python3 -c 'import venv, ensurepip' 2>/dev/null || APT_PACKAGES+=(python3 python3-venv python3-pip)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    say "installing the Rust toolchain (rustup)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# tansu 0.6.0 with the memory (dynostore) and sqlite (libsql) storage engines; the default
# feature set has no storage engine at all. ~25 min to build on 2 cores, so it is kept.
TANSU_ROOT="$HOSTPULSE_CACHE/tansu-0.6.0-dynostore-libsql"
export HOSTPULSE_TANSU="$TANSU_ROOT/bin/tansu"
if [ ! -x "$HOSTPULSE_TANSU" ]; then
  say "building tansu 0.6.0 from crates.io (once; about 25 minutes on 2 cores)"
  cargo install tansu --locked --version 0.6.0 --features dynostore,libsql --root "$TANSU_ROOT"
fi

# tauri-driver: WebDriver for the desktop app (wraps WebKitWebDriver).
TAURI_DRIVER_ROOT="$HOSTPULSE_CACHE/tauri-driver"
export HOSTPULSE_TAURI_DRIVER="$TAURI_DRIVER_ROOT/bin/tauri-driver"
if [ ! -x "$HOSTPULSE_TAURI_DRIVER" ]; then
  say "installing tauri-driver from crates.io"
  cargo install tauri-driver --locked --root "$TAURI_DRIVER_ROOT"
fi

# The Quix SDK readers, each in its own venv pinned by tests/python/requirements-*.txt.
make_venv() { # name requirements-file
  local venv="$HOSTPULSE_CACHE/venv-$1" req="$ROOT/tests/python/$2"
  local stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
    say "making the $1 venv from $2"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
}
make_venv qs057 requirements-qs057.txt
make_venv qs3 requirements-qs3.txt
make_venv desktop requirements-desktop.txt
export HOSTPULSE_QS057_PYTHON="$HOSTPULSE_CACHE/venv-qs057/bin/python"
export HOSTPULSE_QS3_PYTHON="$HOSTPULSE_CACHE/venv-qs3/bin/python"
export HOSTPULSE_DESKTOP_PYTHON="$HOSTPULSE_CACHE/venv-desktop/bin/python"
