#!/usr/bin/env bash
# Called by meson: builds one plugin crate in release mode in meson's build
# directory and copies the library to where meson expects its output.
set -euo pipefail
cargo=$1 src=$2 build=$3 package=$4 library=$5
"$cargo" build --release --quiet --manifest-path "$src/Cargo.toml" \
  --target-dir "$build/cargo-target" -p "$package"
cp "$build/cargo-target/release/$library" "$build/$library"
