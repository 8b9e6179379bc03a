#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build, and run the demo.
# The recording is left in the directory given as first argument
# (default: ./fanout-demo-recording).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace
echo
echo "Plugins built: GST_PLUGIN_PATH=$PWD/target/release gst-inspect-1.0 bitrate-recorder"
echo
exec target/release/record-and-play "${1:-fanout-demo-recording}" "${2:-8}"
