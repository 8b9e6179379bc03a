#!/usr/bin/env bash
# Installs what fanout needs on Debian 12 that is not there yet: GStreamer
# 1.22 with its development files and plugins, ffprobe, meson, PyGObject (with
# python3-gst-1.0, which reads the lists in session elements' stats), and
# iproute2 + nftables for the tests that build networks in namespaces, and
# fontconfig with a font for the labels of fanout-plot's charts.
# Needs root (or sudo). Rust itself comes from rustup (https://rustup.rs):
# Debian's rustc is too old for gstreamer-rs.
set -euo pipefail

packages=(
  pkg-config gcc
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  ffmpeg meson ninja-build python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0
  iproute2 nftables
  libfontconfig1-dev fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
