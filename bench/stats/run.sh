#!/usr/bin/env bash
# Benchmark of the shift's permutation test (issue 11): wall and CPU time of `convlens shift`
# with 1,000 random label permutations per cell against the same command without permutations,
# on the demo zoo (4 models) and, when ../shared is there, the cifar10-mini zoo (12 models),
# for 1 and 2 threads; checks that 1- and 2-thread outputs are byte-identical.
#
# usage: bench/stats/run.sh [N]     (best of N runs per row, default 5)
#
# Environment (optional): CONVLENS (a convlens binary; default: built here with
# `cargo build --release`), SHARED (default ../shared beside the repository).
# Needs GNU time as /usr/bin/time (Debian package `time`).
set -euo pipefail

N=${1:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (GNU time) is missing: apt-get install time" >&2; exit 2; }
if [ -z "${CONVLENS:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p convlens-cli) >&2
  CONVLENS="${CARGO_TARGET_DIR:-$ROOT/target}/release/convlens"
fi

best() { # runs, command... -> "wall cpu"
  local runs=$1; shift
  local i bw="" out=""
  for ((i = 0; i < runs; i++)); do
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$@" >/dev/null 2>"$TMP/err" || {
      echo "error: command failed: $*" >&2; cat "$TMP/err" >&2; exit 1; }
    read -r w u s <<<"$(tail -n 1 "$TMP/time")"
    if [ -z "$bw" ] || awk -v a="$w" -v b="$bw" 'BEGIN{exit !(a < b)}'; then
      bw=$w; out=$(awk -v w="$w" -v u="$u" -v s="$s" 'BEGIN{printf "%.2f %.2f", w, u + s}')
    fi
  done
  echo "$out"
}

rows=()
zoo_rows() { # label, zoo dir, extra build args...
  local label=$1 zoo=$2; shift 2
  local db="$TMP/db-$label"
  "$CONVLENS" db build "$zoo" --meta "$zoo/meta.csv" "$@" -o "$db" 2>/dev/null
  local common=(shift "$db" --by Robust --bootstrap 0 --splits 0)
  for j in 1 2; do
    local r0 r1
    r0=$(best "$N" "$CONVLENS" -j $j "${common[@]}" --permutations 0 -o "$TMP/p0-$j")
    r1=$(best "$N" "$CONVLENS" -j $j "${common[@]}" --permutations 1000 --random-permutations -o "$TMP/p1-$j")
    read -r w0 c0 <<<"$r0"; read -r w1 c1 <<<"$r1"
    rows+=("| $label | $j | $w0 | $c0 | $w1 | $c1 |")
    echo "$label -j $j: no permutations $r0, 1000 permutations $r1" >&2
  done
  cmp -s "$TMP/p1-1/shift.json" "$TMP/p1-2/shift.json" || { echo "error: $label: 1- and 2-thread outputs differ" >&2; exit 1; }
}

zoo_rows "demo zoo (4 models)" "$ROOT/examples/demo-zoo"
if [ -f "$SHARED/zoo/cifar10-mini/meta.csv" ]; then
  zoo_rows "cifar10-mini (12 models, ONNX)" "$SHARED/zoo/cifar10-mini" --formats onnx
fi

echo
echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load average $(cut -d' ' -f1-3 /proc/loadavg); best of $N runs."
echo
echo "| zoo | threads | shift, no permutations: wall (s) | CPU (s) | 1,000 permutations per cell: wall (s) | CPU (s) |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
