#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build, and run the flagship demo:
# one live source recorded, time-shifted 0/2/4 s and served as FEC packets to three
# receivers across links losing 10 % each way. The recording, what each receiver got
# and a plot are left in the directory given as first argument (default ./fanout-demo);
# the second is how many seconds of source to run (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p gst-plugin-fanout-recording -p gst-plugin-fanout-fec \
  -p gst-plugin-fanout-session -p fanout-examples -p fanout-plot
echo
echo "Plugins built: GST_PLUGIN_PATH=$PWD/target/release gst-inspect-1.0 offset-tee"
echo
exec target/release/flagship "${1:-fanout-demo}" "${2:-10}"
