#!/usr/bin/env bash
# Builds the workspace, puts the two example plugins in a plugins directory, lists them
# (no library is loaded) and calls historical-data (which loads market-data first).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --quiet
demo=target/demo
rm -rf "$demo"
mkdir -p "$demo/plugins"
case "$(uname -s)" in
  Darwin) ext=dylib ;;
  *) ext=so ;;
esac
cp "target/debug/libmarket_data.$ext" "target/debug/libhistorical_data.$ext" "$demo/plugins/"

host() { ./target/debug/plugin-host --config examples/host.toml --plugins-dir "$demo/plugins" --cache-dir "$demo/cache" "$@"; }

echo "== plugin-host list"
host list
echo
echo "== plugin-host call historical-data bars {\"symbol\":\"AAPL\",\"count\":3}"
RUST_LOG="${RUST_LOG:-info}" host call historical-data bars '{"symbol":"AAPL","count":3}'
