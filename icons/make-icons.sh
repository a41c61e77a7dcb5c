#!/usr/bin/env bash
# Draws HostPulse's app icon with ImageMagick: a mid-tone disc outlined in near-black with a
# white pulse mark, so it reads on light and on dark backgrounds alike. (The tray icon is drawn by
# the app itself from the load and the state: hostpulse_core::tray::icon.)
# Run from this directory; the PNGs and icon.ico are committed.
set -euo pipefail
draw() { # name size colour mark
  local name=$1 s=$2 colour=$3 mark=$4
  local c=$((s / 2)) r=$((s / 2 - s / 16)) w=$((s / 24 > 1 ? s / 24 : 1)) m=$((s / 10 > 2 ? s / 10 : 2))
  local pulse="polyline $((s*3/16)),$c $((s*6/16)),$c $((s*7/16)),$((s*5/16)) $((s*9/16)),$((s*11/16)) $((s*10/16)),$c $((s*13/16)),$c"
  local bars="rectangle $((s*6/16)),$((s*5/16)) $((s*7/16)),$((s*11/16)) rectangle $((s*9/16)),$((s*5/16)) $((s*10/16)),$((s*11/16))"
  local dash="line $((s*5/16)),$c $((s*11/16)),$c"
  local cross="line $((s*5/16)),$((s*5/16)) $((s*11/16)),$((s*11/16)) line $((s*11/16)),$((s*5/16)) $((s*5/16)),$((s*11/16))"
  local shape
  case $mark in pulse) shape=$pulse ;; bars) shape=$bars ;; dash) shape=$dash ;; cross) shape=$cross ;; esac
  local fillmark=none
  [ "$mark" = bars ] && fillmark=white
  convert -size "${s}x${s}" xc:none \
    -fill "$colour" -stroke '#111111' -strokewidth "$w" -draw "circle $c,$c $c,$((c - r))" \
    -fill "$fillmark" -stroke white -strokewidth "$m" -draw "stroke-linejoin round stroke-linecap round $shape" \
    "PNG32:$name"
}
draw icon.png 512 '#2563eb' pulse
draw 32x32.png 32 '#2563eb' pulse
draw 128x128.png 128 '#2563eb' pulse
draw 128x128@2x.png 256 '#2563eb' pulse
# icon.ico, for Windows (tauri-build puts it into the executable's resources): the app icon drawn
# at each size Windows asks for, so that the small ones are drawn sharp rather than scaled down.
ico_dir=$(mktemp -d)
trap 'rm -rf "$ico_dir"' EXIT
for size in 16 24 32 48 64 128 256; do
  draw "$ico_dir/$size.png" "$size" '#2563eb' pulse
done
convert "$ico_dir"/{16,24,32,48,64,128,256}.png icon.ico
