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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Tests that need root (mounting a small disk, a loop device) are #[ignore]d: run
# here when root, counted as skipped otherwise.
ignored=()
if [ "$(id -u)" = 0 ]; then
  ignored=(-- --include-ignored)
else
  echo "not root: the tests that need root are skipped"
fi
# --no-fail-fast: every failure shows, not just the first binary's.
cargo test --workspace --no-fail-fast "${ignored[@]}" 2>&1 | tee "$log"

echo "== meson: build, install into a staging directory, inspect from there"
scripts/check-meson.sh

# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
