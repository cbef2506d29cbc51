#!/usr/bin/env bash
# Runs the fuzz targets (cargo fuzz, nightly toolchain), each from the committed seeds in
# seeds/TARGET plus what earlier runs found (corpus/TARGET, not committed).
#
#   host/fuzz/fuzz.sh --runs 1000000            every target, a million executions each
#   host/fuzz/fuzz.sh --seconds 30 config units  two targets, 30 s each
#   --sanitizer none                             no AddressSanitizer: builds and runs faster
#                                                (what CI does; the default is address)
#   --quick-build                                optimise less (opt-level 1, 16 codegen units):
#                                                the build takes under half the time, a run
#                                                makes 60-140% of the executions (what CI does)
#
# Installs cargo-fuzz when missing. A crash stops the script with libFuzzer's report and
# the input under artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
self=$PWD/$(basename "$0")

limit=(-runs=100000)
sanitizer=address
build=()
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) limit=("-runs=$2"); shift 2 ;;
    --seconds) limit=("-max_total_time=$2"); shift 2 ;;
    --sanitizer) sanitizer="$2"; shift 2 ;;
    --quick-build) export CARGO_PROFILE_RELEASE_OPT_LEVEL=1; build=(--codegen-units 16); shift ;;
    -h|--help) sed -n '2,14p' "$self"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config units env_overlay registry_cache elf_header manifest c_description worker_frames)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzzing needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  started=$(date +%s)
  cargo +nightly fuzz run "${build[@]}" --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
    "${limit[@]}" -print_final_stats=1 2>"corpus/$target.log" || {
      tail -n 40 "corpus/$target.log" >&2
      echo "fuzz: $target FAILED (input under host/fuzz/artifacts/$target/)" >&2
      exit 1
    }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "corpus/$target.log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz: $target ok, $runs executions in $(( $(date +%s) - started )) s"
done
