#!/usr/bin/env bash
# Builds the .deb (scripts/package.sh), installs it with apt (which pulls its dependencies),
# starts the installed app under Xvfb in a private D-Bus session with a fresh HOME, checks that it
# runs and shows its first-run window, then stops and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${HOSTPULSE_IN_SECRET_SESSION:-}" ]; then
  bash scripts/package.sh >&2
  exec bash scripts/with-secret-service.sh bash "$0" "$@"
fi
source scripts/setup.sh
deb=$(ls -1t target/release/bundle/deb/*.deb | head -1)
pkg=$(dpkg-deb -f "$deb" Package)
say "installing $deb ($pkg)"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "./$deb" >/dev/null
bin=$(dpkg -L "$pkg" | grep -E '/bin/[^/]+$' | head -1)
home=$(mktemp -d)
n=$(for i in $(seq 190 250); do [ -e "/tmp/.X11-unix/X$i" ] || { echo "$i"; break; }; done)
Xvfb ":$n" -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
cleanup() {
  [ -n "${app:-}" ] && kill "$app" 2>/dev/null || true
  kill "$xvfb" 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get remove -y -qq "$pkg" >/dev/null || true
  rm -rf "$home"
}
trap cleanup EXIT
sleep 1
say "starting the installed $bin"
HOME="$home" XDG_CONFIG_HOME="$home" XDG_DATA_HOME="$home" DISPLAY=":$n" "$bin" >"$home/app.log" 2>&1 &
app=$!
for _ in $(seq 60); do
  state=$(DISPLAY=":$n" "$HOSTPULSE_DESKTOP_PYTHON" tests/python/x11_window.py state HostPulse)
  [ "$state" = viewable ] && break
  kill -0 "$app" 2>/dev/null || { cat "$home/app.log"; echo "the installed app exited" >&2; exit 1; }
  sleep 0.5
done
[ "$state" = viewable ] || { cat "$home/app.log"; echo "no window from the installed app" >&2; exit 1; }
say "the installed package starts and shows its first-run window"
