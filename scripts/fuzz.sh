#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of the reader crates for SECONDS seconds each (default
# 60) and prints a table (executions, exec/s, cov, ft, slowest input, peak RSS, corpus files,
# result; `cpu_s` is the CPU time the run got, user + system). See docs/fuzzing.md.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# Environment:
#   JOBS=N         run N targets at the same time (default 1; one libFuzzer job each)
#   MAX_RUNS=N     also stop a target after N executions (e.g. 10000000)
#   TARGETS="..."  crate:target pairs to run (default: all eight below)
#   SEEDS=0        do not add the real fixtures as seeds (default 1: every file of the target's
#                  format below 2 MB from fixtures/, examples/ and ../shared, read-only)
#   FUZZ_LOGS=DIR  where the libFuzzer logs and the table go (default target/fuzz-logs)
#   FUZZ_FLAGS="…" extra libFuzzer flags
#   NICE=N         niceness of the runs (default 19)
#   TIMEOUT=S      per-input time limit in seconds (default 2; libFuzzer measures wall time, so
#                  a loaded machine needs more: replay the slowest inputs on a quiet one)
#
# Needs `cargo install cargo-fuzz`. On a stable toolchain it sets RUSTC_BOOTSTRAP=1 (cargo-fuzz
# builds with -Z sanitizer=address). CARGO_TARGET_DIR defaults to target/fuzz of the checkout.
# Each run starts from the committed corpus crates/<fmt>/fuzz/corpus/<target>/ (and the seeds)
# but writes the inputs it finds to a temporary folder, so the checkout stays clean; crashes,
# leaks, timeouts (> TIMEOUT s per input; libFuzzer times wall clock, so a loaded machine needs
# slack: the table's "slow" column, the slowest input in whole seconds, must be 0) and
# out-of-memory inputs (a single allocation over 64 MiB or RSS over 2 GiB) go to
# crates/<fmt>/fuzz/artifacts/<target>/ (git-ignored) and are listed.
set -u
SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/fuzz}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2; exit 2; }
JOBS="${JOBS:-1}"
NICE="${NICE:-19}"
LOGS="${FUZZ_LOGS:-$ROOT/target/fuzz-logs}"
mkdir -p "$LOGS"
# crate:target pairs (each crates/<crate>/fuzz is its own workspace)
TARGETS="${TARGETS:-onnx:read torch:read safetensors:read numpy:npy numpy:npz tflite:read keras:read hdf5:read}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# file name patterns of each target's format (seeds)
patterns() {
  case "$1" in
    onnx:read) echo '*.onnx' ;;
    torch:read) echo '*.pt *.pth *.bin *.ckpt *.pkl *.tar' ;;
    safetensors:read) echo '*.safetensors' ;;
    numpy:npy) echo '*.npy' ;;
    numpy:npz) echo '*.npz' ;;
    tflite:read) echo '*.tflite' ;;
    keras:read) echo '*.h5 *.keras' ;;
    hdf5:read) echo '*.h5' ;;
  esac
}

seed_dir() {  # collects the real fixtures of a target's format below 2 MB (de-duplicated by name+size)
  local pair=$1 dir=$2
  mkdir -p "$dir"
  [ "${SEEDS:-1}" = 1 ] || return 0
  local args=()
  for p in $(patterns "$pair"); do args+=(-o -name "$p"); done
  find "$ROOT/fixtures" "$ROOT/examples" "$ROOT/../shared" -type f -size -2097152c \( "${args[@]:1}" \) 2>/dev/null |
    while read -r f; do cp -n "$f" "$dir/$(sha1sum "$f" | cut -c1-16)-$(basename "$f")"; done
}

run_one() {
  local pair=$1 crate="${1%%:*}" target="${1##*:}"
  local dir="$ROOT/crates/$crate" log="$LOGS/$crate-$target.log" row="$LOGS/$crate-$target.row"
  local seeds="$dir/fuzz/corpus/$target" corpus="$WORK/corpus-$crate-$target" extra="$WORK/seeds-$crate-$target"
  mkdir -p "$seeds" "$corpus" "$dir/fuzz/artifacts/$target"
  seed_dir "$pair" "$extra"
  local runs=()
  [ -n "${MAX_RUNS:-}" ] && runs=(-runs="$MAX_RUNS")
  echo "== $crate/$target: run ${SECONDS_PER_TARGET}s ($(ls "$extra" | wc -l) extra seeds)" >&2
  local t0; t0=$(date +%s)
  # the binary copied aside after its build (targets of different crates share the name `read`
  # and the uplifted path in CARGO_TARGET_DIR: running the copy keeps parallel runs apart)
  (cd "$dir" && ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}" /usr/bin/time -f "%U %S" -o "$LOGS/$crate-$target.cpu" \
      nice -n "$NICE" "$WORK/bin/$crate-$target" -artifact_prefix="$dir/fuzz/artifacts/$target/" \
      "$corpus" "$seeds" "$extra" \
      -max_total_time="$SECONDS_PER_TARGET" "${runs[@]}" -rss_limit_mb=2048 -malloc_limit_mb=64 \
      -timeout="${TIMEOUT:-2}" -print_final_stats=1 ${FUZZ_FLAGS:-}) >"$log" 2>&1
  local rc=$? secs=$(( $(date +%s) - t0 )) cpu
  cpu="$(awk '{printf "%.0f", $1 + $2}' "$LOGS/$crate-$target.cpu" 2>/dev/null)"
  local last execs rate cov ft slow rss files result
  last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
  [ -n "$execs" ] || execs="$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")"
  rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')"
  slow="$(grep -E '^stat::slowest_unit_time_sec' "$log" | awk '{print $2}')"
  rss="$(grep -E '^stat::peak_rss_mb' "$log" | awk '{print $2}')"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | awk '{print $2}')"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | awk '{print $2}')"
  files="$(find "$corpus" -type f | wc -l)"
  if [ "$rc" -eq 0 ]; then result="ok"; else
    result="$(grep -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+|ERROR: AddressSanitizer: [a-z-]+|ERROR: LeakSanitizer: [a-z-]+' "$log" | head -1)"
    result="${result:-exit $rc} ($(ls -t "$dir/fuzz/artifacts/$target" | head -1))"
    grep -E 'panicked at|ERROR:' -A3 "$log" | head -8 >&2
  fi
  # keep the run's corpus beside the log (for `cargo fuzz cmin` / `-merge=1` into the committed one)
  rm -rf "$LOGS/corpus-$crate-$target"; cp -r "$corpus" "$LOGS/corpus-$crate-$target"
  printf '%-18s %7s %6s %10s %8s %6s %6s %5s %6s %6s  %s\n' "$crate/$target" "$secs" "${cpu:--}" "${execs:--}" "${rate:--}" \
    "${cov:--}" "${ft:--}" "${slow:--}" "${rss:--}" "$files" "$result" >"$row"
  [ "$rc" -eq 0 ]
}

status=0
HOST="$(rustc -vV | sed -n 's/^host: //p')"
mkdir -p "$WORK/bin"
for pair in $TARGETS; do
  crate="${pair%%:*}"; target="${pair##*:}"
  echo "== $crate/$target: build" >&2
  if (cd "$ROOT/crates/$crate" && nice -n "$NICE" cargo fuzz build "$target") >"$LOGS/$crate-$target.build.log" 2>&1; then
    cp "$CARGO_TARGET_DIR/$HOST/release/$target" "$WORK/bin/$crate-$target"
  else
    tail -20 "$LOGS/$crate-$target.build.log" >&2
    printf '%-18s %s\n' "$crate/$target" "BUILD FAILED" >"$LOGS/$crate-$target.row"
    status=1
  fi
done
running=0
for pair in $TARGETS; do
  crate="${pair%%:*}"; target="${pair##*:}"
  grep -q "BUILD FAILED" "$LOGS/$crate-$target.row" 2>/dev/null && continue
  rm -f "$LOGS/$crate-$target.row"
  run_one "$pair" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n || status=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
{
  printf '\n%-18s %7s %6s %10s %8s %6s %6s %5s %6s %6s  %s\n' target seconds cpu_s execs exec/s cov ft slow rss_mb files result
  for pair in $TARGETS; do cat "$LOGS/${pair%%:*}-${pair##*:}.row"; done
} | tee "$LOGS/table.txt"
exit $status
