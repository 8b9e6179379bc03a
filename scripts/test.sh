#!/usr/bin/env bash
# Quick start, step 2: the whole test suite. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build (the plugin libraries the gst-launch tests load)"
cargo build --workspace --quiet

echo "== tests"
cargo test --workspace

echo "== meson: build, install into a staging directory, inspect from there"
scripts/check-meson.sh
