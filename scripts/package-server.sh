#!/usr/bin/env bash
# Builds the server package (the headless agent alone: no WebKit), installs it with apt on this
# machine, checks it, and removes it again:
#   /usr/bin/hostpulse, `hostpulse --version`, the man page, the example settings as a conffile,
#   the systemd unit (installed, not enabled; `systemd-analyze verify` clean, `systemd-analyze
#   security --offline=yes` at most 4.0), no WebKit among the dependencies.
# The .deb stays in target/debian/. Uses cargo-deb from crates.io (kept in ~/.cache/hostpulse).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-app.sh --headless
HOSTPULSE_CACHE="${HOSTPULSE_CACHE:-$HOME/.cache/hostpulse}"
CARGO_DEB="$HOSTPULSE_CACHE/cargo-deb/bin/cargo-deb"
if [ ! -x "$CARGO_DEB" ]; then
  say "installing cargo-deb from crates.io"
  cargo install cargo-deb --locked --root "$HOSTPULSE_CACHE/cargo-deb"
fi
apt_install dpkg-dev systemd man-db

say "building hostpulse (profile server: size-optimised, LTO) and its man page"
cargo build --profile server -p hostpulse-cli
mkdir -p target/man
./target/server/hostpulse manpage | gzip -9n > target/man/hostpulse.1.gz
say "building the package"
deb=$(realpath "$("$CARGO_DEB" -p hostpulse-cli --profile server --no-build --no-strip | tail -n 1)")
[ -f "$deb" ] || { echo "cargo deb made no package" >&2; exit 1; }
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"
dpkg-deb --info "$deb" | sed -n 's/^ //p' | grep -E '^(Package|Version|Depends|Section)'
if dpkg-deb --field "$deb" Depends | grep -qi webkit; then
  echo "FAIL: the server package depends on WebKit" >&2; exit 1
fi

say "installing it with apt"
$SUDO apt-get install -y -qq "$deb" >/dev/null
trap '$SUDO apt-get purge -y -qq hostpulse >/dev/null 2>&1 || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
hostpulse --version
[ "$(command -v hostpulse)" = /usr/bin/hostpulse ] || fail "hostpulse is not /usr/bin/hostpulse"
man -w hostpulse >/dev/null || fail "no man page"
dpkg-query -W -f='${Conffiles}\n' hostpulse | grep -q /etc/hostpulse/settings.toml || fail "settings.toml is not a conffile"
hostpulse check --config /etc/hostpulse/settings.toml 2>&1 | head -n 3 || true
unit=/lib/systemd/system/hostpulse.service
[ -f "$unit" ] || fail "no unit at $unit"
systemd-analyze verify "$unit" || fail "systemd-analyze verify"
score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for hostpulse.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security: $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 4.0) }' || fail "exposure $score is above 4.0"
[ ! -e /etc/systemd/system/multi-user.target.wants/hostpulse.service ] || fail "the unit was enabled"
echo "the unit is installed and not enabled"

say "removing it again"
$SUDO apt-get purge -y -qq hostpulse >/dev/null
trap - EXIT
[ ! -e /usr/bin/hostpulse ] || fail "/usr/bin/hostpulse is still there"
[ ! -e "$unit" ] || fail "the unit is still there"
say "the server package installs, checks out and removes cleanly"
