#!/usr/bin/env bash
# Benchmark of `convlens quality` against the reference oracle (issue "core readers and
# metrics"): whole-process wall time, user+sys CPU time and peak RSS, best of N runs, printed as
# a markdown table.
#
# usage: bench/quality/run.sh [N]          (N runs per row, default 5; the oracle gets min(N, 3))
#
# Environment (all optional):
#   VENV       Python venv with numpy scipy scikit-learn pandas onnx safetensors
#              (default /work/venv-ref; created with `python3 -m venv` + pip if missing,
#              which needs python3 >= 3.10 with the venv module and access to PyPI)
#   MODEL      the wide_resnet50_2-sized checkpoint (default /tmp/wrn50_2.safetensors;
#              generated with bench/gen_wrn50_2.py when missing: ~263 MiB, ~10 s)
#   SHARED     the shared data folder (default: ../shared beside the repository); the oracle is
#              $SHARED/reference/reference.py and the zoo $SHARED/zoo/cifar10-mini/*.onnx
#              (falls back to the repository's fixtures/zoo/cifar10-mini/*.onnx)
#   CONVLENS   a convlens binary (default: built here with `cargo build --release`)
#   NO_ORACLE  set to 1 to skip the oracle rows
# Needs GNU time as /usr/bin/time (Debian package `time`).
set -euo pipefail

N=${1:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VENV:-/work/venv-ref}
MODEL=${MODEL:-/tmp/wrn50_2.safetensors}
SHARED=${SHARED:-$ROOT/../shared}
NO_ORACLE=${NO_ORACLE:-0}
ORACLE_N=$(( N < 3 ? N : 3 ))
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (GNU time) is missing: apt-get install time" >&2; exit 2; }

if [ -z "${CONVLENS:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p convlens-cli) >&2
  CONVLENS="${CARGO_TARGET_DIR:-$ROOT/target}/release/convlens"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating the Python venv $VENV (numpy scipy scikit-learn pandas onnx safetensors)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy scipy scikit-learn pandas onnx safetensors >&2
fi
PY="$VENV/bin/python"

if [ ! -f "$MODEL" ]; then
  echo "generating $MODEL" >&2
  "$PY" "$ROOT/bench/gen_wrn50_2.py" "$MODEL" >&2
fi

ORACLE="$SHARED/reference/reference.py"
if [ "$NO_ORACLE" != 1 ] && [ ! -f "$ORACLE" ]; then
  echo "note: $ORACLE not found: oracle rows skipped" >&2
  NO_ORACLE=1
fi
shopt -s nullglob
ZOO=("$SHARED"/zoo/cifar10-mini/*.onnx)
[ ${#ZOO[@]} -gt 0 ] || ZOO=("$ROOT"/fixtures/zoo/cifar10-mini/*.onnx)

# best RUNS CMD...: runs CMD RUNS times; prints "wall user+sys rss_mib" of the fastest run.
best() {
  local runs=$1; shift
  local i best_wall="" line
  for ((i = 0; i < runs; i++)); do
    /usr/bin/time -f "%e %U %S %M" -o "$TMP/time" "$@" >/dev/null 2>"$TMP/err" || {
      echo "error: command failed: $*" >&2; cat "$TMP/err" >&2; exit 1; }
    line=$(tail -n 1 "$TMP/time")
    read -r w u s m <<<"$line"
    if [ -z "$best_wall" ] || awk -v a="$w" -v b="$best_wall" 'BEGIN{exit !(a < b)}'; then
      best_wall=$w
      best_line=$(awk -v w="$w" -v u="$u" -v s="$s" -v m="$m" \
        'BEGIN{printf "%.2f %.2f %.0f", w, u + s, m / 1024}')
    fi
  done
  echo "$best_line"
}

mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN{printf "%.0f", b / 1048576}'; }
zoo_mib() { local t=0 f; for f in "$@"; do t=$((t + $(stat -c %s "$f"))); done; awk -v b=$t 'BEGIN{printf "%.1f", b / 1048576}'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
row() { # label, input, size MiB, runs, command...
  local label=$1 input=$2 size=$3 runs=$4; shift 4
  local r; r=$(best "$runs" "$@")
  read -r w c m <<<"$r"
  rows+=("| $label | $input | $size | $w | $c | $m |")
  echo "$label: $r" >&2
}

row "convlens quality, 1 thread" "wrn50_2" "$(mib "$MODEL")" "$N" \
  "$CONVLENS" -j 1 quality -f json "$MODEL" -o "$TMP/q1.json"
row "convlens quality, 2 threads" "wrn50_2" "$(mib "$MODEL")" "$N" \
  "$CONVLENS" -j 2 quality -f json "$MODEL" -o "$TMP/q2.json"
cmp -s "$TMP/q1.json" "$TMP/q2.json" || { echo "error: 1- and 2-thread outputs differ" >&2; exit 1; }
row "convlens quality, 2 threads" "zoo: ${#ZOO[@]} ONNX" "$(zoo_mib "${ZOO[@]}")" "$N" \
  "$CONVLENS" -j 2 quality -f json "${ZOO[@]}" -o "$TMP/qz.json"
if [ "$NO_ORACLE" != 1 ]; then
  row "oracle reference.py" "wrn50_2" "$(mib "$MODEL")" "$ORACLE_N" \
    "$PY" "$ORACLE" "$MODEL" -o "$TMP/ref.json" -q
  row "oracle reference.py" "zoo: ${#ZOO[@]} ONNX" "$(zoo_mib "${ZOO[@]}")" "$ORACLE_N" \
    "$PY" "$ORACLE" "${ZOO[@]}" -o "$TMP/refz.json" -q
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average (1/5/15 min) before: $load_before, after: $load_after; best of $N runs (oracle: $ORACLE_N)."
echo
echo "| program | input | size (MiB) | wall (s) | user+sys (s) | peak RSS (MiB) |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
