#!/usr/bin/env bash
# Installs everything HostPulse's tests need, reusing whatever is already there: what the app
# needs (scripts/setup-app.sh), then the test tools: Debian packages (clang and protoc to build
# tansu; a D-Bus session bus and gnome-keyring, the Secret Service; stunnel4 and openssl for a
# TLS broker; Xvfb, the WebKit WebDriver, X11 and image tools for the desktop suite; systemd for
# systemd-analyze, which checks the service unit), rustfmt and
# clippy, the tansu broker (built from crates.io with storage engines), tauri-driver, and the
# pinned Python venvs (the Quix SDK readers, the tray test's D-Bus host). Sourced by test.sh,
# soak.sh, package.sh and bench/compare.sh; exports HOSTPULSE_TANSU, HOSTPULSE_TAURI_DRIVER,
# HOSTPULSE_QS057_PYTHON, HOSTPULSE_QS3_PYTHON, HOSTPULSE_DESKTOP_PYTHON.
#
# HOSTPULSE_SETUP_PARTS, when set, names the only parts to set up: `tansu`, `tauri-driver`,
# `venv-qs057`, `venv-qs3`, `venv-desktop` (scripts/run-headless.sh takes tansu and venv-qs3).
# (A variable, not arguments: a sourced script would see its caller's arguments.)
set -euo pipefail

HOSTPULSE_CACHE="${HOSTPULSE_CACHE:-$HOME/.cache/hostpulse}"
mkdir -p "$HOSTPULSE_CACHE"
read -r -a PARTS <<<"${HOSTPULSE_SETUP_PARTS:-}"
wants() { [ "${#PARTS[@]}" -eq 0 ] || [[ " ${PARTS[*]} " == *" $1 "* ]]; }

if [ "${#PARTS[@]}" -eq 0 ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/setup-app.sh"
else
  source "$(dirname "${BASH_SOURCE[0]}")/setup-app.sh" --headless
fi

TEST_PACKAGES=(procps cmake clang libclang-dev protobuf-compiler)
if [ "${#PARTS[@]}" -eq 0 ]; then
  TEST_PACKAGES+=(dbus gnome-keyring stunnel4 openssl xvfb libglib2.0-bin x11-utils imagemagick xdotool
    webkit2gtk-driver systemd)
fi
# Debian's python3 needs python3-venv for the SDK venvs; a pyenv Python brings its own.
python3 -c 'import venv, ensurepip' 2>/dev/null || TEST_PACKAGES+=(python3 python3-venv python3-pip)
apt_install "${TEST_PACKAGES[@]}"

if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# tansu 0.6.0 with the memory (dynostore) and sqlite (libsql) storage engines; the default
# feature set has no storage engine at all. ~25 min to build on 2 cores, so it is kept.
TANSU_ROOT="$HOSTPULSE_CACHE/tansu-0.6.0-dynostore-libsql"
export HOSTPULSE_TANSU="$TANSU_ROOT/bin/tansu"
if wants tansu && [ ! -x "$HOSTPULSE_TANSU" ]; then
  say "building tansu 0.6.0 from crates.io (once; about 25 minutes on 2 cores)"
  cargo install tansu --locked --version 0.6.0 --features dynostore,libsql --root "$TANSU_ROOT"
fi

# tauri-driver: WebDriver for the desktop app (wraps WebKitWebDriver).
TAURI_DRIVER_ROOT="$HOSTPULSE_CACHE/tauri-driver"
export HOSTPULSE_TAURI_DRIVER="$TAURI_DRIVER_ROOT/bin/tauri-driver"
if wants tauri-driver && [ ! -x "$HOSTPULSE_TAURI_DRIVER" ]; then
  say "installing tauri-driver from crates.io"
  cargo install tauri-driver --locked --root "$TAURI_DRIVER_ROOT"
fi

# The Quix SDK readers, each in its own venv pinned by tests/python/requirements-*.txt.
make_venv() { # name requirements-file
  local venv="$HOSTPULSE_CACHE/venv-$1" req="$ROOT/tests/python/$2"
  local stamp="$venv/.requirements"
  wants "venv-$1" || return 0
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
