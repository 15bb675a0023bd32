#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of the reader crates for SECONDS seconds each (default
# 60), one target at a time, single job, and prints a table (executions, exec/s, cov, ft, corpus
# files, result). See docs/fuzzing.md.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# Needs `cargo install cargo-fuzz`. On a stable toolchain it sets RUSTC_BOOTSTRAP=1 (cargo-fuzz
# builds with -Z sanitizer=address). CARGO_TARGET_DIR defaults to target/fuzz of the checkout.
# Each run starts from the committed corpus crates/<fmt>/fuzz/corpus/<target>/ but writes the
# inputs it finds to a temporary folder, so the checkout stays clean; crashes, timeouts and
# out-of-memory inputs go to crates/<fmt>/fuzz/artifacts/<target>/ (git-ignored) and are listed.
# Everything runs under `nice -n 19`. Extra libFuzzer flags: FUZZ_FLAGS="-max_len=65536 ...".
set -u
SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/fuzz}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2; exit 2; }

# crate:target pairs (each crates/<crate>/fuzz is its own workspace)
TARGETS="onnx:read torch:read safetensors:read numpy:npy numpy:npz tflite:read keras:read hdf5:read"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
rows=()
status=0
for pair in $TARGETS; do
  crate="${pair%%:*}"; target="${pair##*:}"
  dir="$ROOT/crates/$crate"
  log="$WORK/$crate-$target.log"
  echo "== $crate/$target: build" >&2
  if ! (cd "$dir" && nice -n 19 cargo fuzz build "$target") >"$log" 2>&1; then
    tail -20 "$log" >&2
    rows+=("$(printf '%-18s %10s %8s %7s %7s %7s  %s' "$crate/$target" - - - - - "BUILD FAILED")")
    status=1; continue
  fi
  seeds="$dir/fuzz/corpus/$target"; mkdir -p "$seeds" "$WORK/corpus-$crate-$target" "$dir/fuzz/artifacts/$target"
  echo "== $crate/$target: run ${SECONDS_PER_TARGET}s" >&2
  (cd "$dir" && nice -n 19 cargo fuzz run "$target" "$WORK/corpus-$crate-$target" "$seeds" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=2 -print_final_stats=1 \
      ${FUZZ_FLAGS:-}) >"$log" 2>&1
  rc=$?
  last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
  [ -n "$execs" ] || execs="$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")"
  rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | awk '{print $2}')"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | awk '{print $2}')"
  files="$(find "$WORK/corpus-$crate-$target" "$seeds" -type f | wc -l)"
  if [ "$rc" -eq 0 ]; then result="ok"; else
    result="$(grep -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+|ERROR: AddressSanitizer: [a-z-]+' "$log" | head -1)"
    result="${result:-exit $rc} ($(ls -t "$dir/fuzz/artifacts/$target" | head -1))"
    status=1
    grep -E 'panicked at|ERROR:' -A3 "$log" | head -8 >&2
  fi
  rows+=("$(printf '%-18s %10s %8s %7s %7s %7s  %s' "$crate/$target" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "$files" "$result")")
done
printf '\n%-18s %10s %8s %7s %7s %7s  %s\n' target execs exec/s cov ft files result
printf '%s\n' "${rows[@]}"
exit $status
