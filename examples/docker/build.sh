#!/usr/bin/env bash
# The Dockerfile's build step, also run by CI: the release binary and the example plugins,
# from the lock file as committed, copied to OUT (and OUT/plugins).
#   bash examples/docker/build.sh /out
#   PROFILE=dev bash examples/docker/build.sh /out   the same from a debug build (CI: the
#                                                    tests built it already)
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
profile=${PROFILE:-release}
case "$profile" in
  dev) dir=debug ;;
  *) dir=$profile ;;
esac
cd "$(dirname "$0")/../.."
cargo build --profile "$profile" --locked -p plugin-host-cli -p market-data -p historical-data
mkdir -p "$out/plugins"
cp "target/$dir/plugin-host" "$out/"
cp "target/$dir/libmarket_data.so" "target/$dir/libhistorical_data.so" "$out/plugins/"
