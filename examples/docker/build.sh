#!/usr/bin/env bash
# The Dockerfile's build step, also run by CI: the release binary and the example plugins,
# from the lock file as committed, copied to OUT (and OUT/plugins).
#   bash examples/docker/build.sh /out
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
cd "$(dirname "$0")/../.."
cargo build --release --locked -p plugin-host-cli -p market-data -p historical-data
mkdir -p "$out/plugins"
cp target/release/plugin-host "$out/"
cp target/release/libmarket_data.so target/release/libhistorical_data.so "$out/plugins/"
