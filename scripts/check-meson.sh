#!/usr/bin/env bash
# meson builds and installs the plugins; gst-inspect finds every element in
# the installed folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(mktemp -d)
stage=$(mktemp -d)
trap 'rm -rf "$build" "$stage"' EXIT
meson setup "$build" --prefix=/usr >/dev/null
meson compile -C "$build" >/dev/null
meson install -C "$build" --destdir "$stage" >/dev/null
plugin_dir=$(find "$stage" -name 'libgstfanout*.so' -printf '%h\n' | sort -u)
[ -n "$plugin_dir" ] || { echo "meson installed no plugin" >&2; exit 1; }
echo "installed into ${plugin_dir#"$stage"}"
for element in bitrate-recorder bitrate-player offset-tee fec-payloader fec-depayloader session-sink session-src; do
  GST_PLUGIN_PATH="$plugin_dir" GST_REGISTRY="$build/registry.bin" \
    gst-inspect-1.0 "$element" >/dev/null || { echo "$element not found in $plugin_dir" >&2; exit 1; }
  echo "  $element: found"
done
