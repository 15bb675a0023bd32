#!/usr/bin/env bash
# Filter-database scale benchmark: synthetic WRN-like zoo of SIZE 3x3 filters, then
# `convlens db build` + `basis` + `shift` + `aggregate`, each under /usr/bin/time (wall s, peak
# RSS), and optionally the Python oracle on the same files. Prints a markdown table.
#
# usage: bench/scale/run.sh SIZE [--oracle] [--keep]
#   SIZE       number of 3x3 filters: 10M, 100M, 615M, ...
#   --oracle   also run /work/shared/reference/reference.py (needs ~150 bytes/filter of RAM)
#   --keep     keep the zoo and database afterwards (default: keep the zoo, delete the DB)
# environment:
#   REPO         the convlens work tree (default: two folders up from this script)
#   SCALE_DIR    where zoos and databases go (default /work/scale; never inside the repo)
#   CARGO_TARGET_DIR  build folder (default <repo>/target-scale)
#   PYTHON       python with numpy/scipy/sklearn/pandas/safetensors (default /work/venv-ref/bin/python)
#   ORACLE       reference.py path (default <repo>/../shared/reference/reference.py)
#   DROP_CACHES=1  drop the page cache before every step (cold reads; needs root)
#   THREADS      convlens --threads (default: all cores)
#   MIX=cifar    zoo without wide_resnet50_2 (smaller files; for 615M on a ~50 GB disk)
set -euo pipefail

SIZE=${1:?usage: run.sh SIZE [--oracle] [--keep]}
shift
RUN_ORACLE=0
KEEP=0
for a in "$@"; do
  case $a in
    --oracle) RUN_ORACLE=1 ;;
    --keep) KEEP=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
SCALE_DIR=${SCALE_DIR:-/work/scale}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-scale}
PYTHON=${PYTHON:-/work/venv-ref/bin/python}
ORACLE=${ORACLE:-$REPO/../shared/reference/reference.py}
Z=$SCALE_DIR/z$SIZE
DB=$Z/db
OUT=$Z/out
TIMES=$Z/times
mkdir -p "$SCALE_DIR"

(cd "$REPO" && cargo build --release -q -p convlens-cli)
(cd "$REPO/bench/synth" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR/synth cargo build --release -q)
CL=$CARGO_TARGET_DIR/release/convlens
SYNTH=$CARGO_TARGET_DIR/synth/release/convlens-synth
THREAD_ARGS=()
if [ -n "${THREADS:-}" ]; then THREAD_ARGS=(--threads "$THREADS"); fi

rm -rf "$TIMES" "$OUT" "$DB"
mkdir -p "$TIMES" "$OUT"

# runs a step under /usr/bin/time; records "wall_s peak_kib user_s sys_s" in $TIMES/<name>
step() {
  local name=$1
  shift
  if [ "${DROP_CACHES:-0}" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
  echo "== $name: $*" >&2
  /usr/bin/time -f "%e %M %U %S" -o "$TIMES/$name" "$@" > "$OUT/$name.log" 2>&1 || {
    echo "step $name failed:" >&2
    tail -20 "$OUT/$name.log" >&2
    exit 1
  }
  echo "   $(cat "$TIMES/$name") (wall s, peak KiB, user s, sys s)" >&2
}

if [ ! -f "$Z/meta.csv" ] || [ -n "$(find "$Z/zoo" -name '*.tmp' 2>/dev/null)" ] \
  || [ "$(find "$Z/zoo" -name '*.safetensors' | wc -l)" -ne "$(($(wc -l < "$Z/meta.csv") - 1))" ]; then
  rm -f "$Z"/zoo/*.tmp
  step generate "$SYNTH" "$Z" --filters "$SIZE" --mix "${MIX:-all}"
fi
N_FILTERS=$("$SYNTH" "$Z" --filters "$SIZE" --mix "${MIX:-all}" 2>/dev/null | tail -1)
N_MODELS=$(($(wc -l < "$Z/meta.csv") - 1))
ZOO_BYTES=$(du -sb "$Z/zoo" | cut -f1)

step build "$CL" "${THREAD_ARGS[@]}" db build "$Z/zoo" --meta "$Z/meta.csv" -o "$DB"
step basis "$CL" "${THREAD_ARGS[@]}" basis "$DB" --by Robust -o "$OUT/basis"
step shift "$CL" "${THREAD_ARGS[@]}" shift "$DB" --by Robust -o "$OUT/shift"
step aggregate "$CL" "${THREAD_ARGS[@]}" aggregate "$DB" --by Robust -o "$OUT/aggregate"
DB_BYTES=$(du -sb "$DB" | cut -f1)

if [ $RUN_ORACLE = 1 ]; then
  ROB=$(awk -F, -v z="$Z/zoo" 'NR>1 && $2=="True" {printf "%s/%s.safetensors ", z, $1}' "$Z/meta.csv")
  NOR=$(awk -F, -v z="$Z/zoo" 'NR>1 && $2=="False" {printf "%s/%s.safetensors ", z, $1}' "$Z/meta.csv")
  # shellcheck disable=SC2086
  step oracle "$PYTHON" "$ORACLE" --robust $ROB --normal $NOR -o "$OUT/oracle.json" --no-histograms -q
fi

# markdown table
row() { # name label -> "| label | wall s | cpu s | MiB |"
  read -r s k u y < "$TIMES/$1"
  printf "| %s | %.1f | %.1f | %.0f |\n" "$2" "$s" "$(echo "$u + $y" | bc -l)" "$(echo "$k / 1024" | bc -l)"
}
echo
echo "### $SIZE: $N_MODELS models, $N_FILTERS 3x3 filters, zoo $(echo "$ZOO_BYTES / 1000000000" | bc -l | xargs printf %.1f) GB, database $(echo "$DB_BYTES / 1000000000" | bc -l | xargs printf %.1f) GB"
echo
echo "| step | wall s | CPU s (user+sys) | peak RSS MiB |"
echo "| --- | ---: | ---: | ---: |"
if [ -f "$TIMES/generate" ]; then row generate "generate zoo (not counted)"; fi
row build "convlens db build"
row basis "convlens basis"
row shift "convlens shift"
row aggregate "convlens aggregate"
tot=0; cpu=0; peak=0
for s in build basis shift aggregate; do
  read -r a b u y < "$TIMES/$s"
  tot=$(echo "$tot + $a" | bc -l)
  cpu=$(echo "$cpu + $u + $y" | bc -l)
  if [ "$b" -gt "$peak" ]; then peak=$b; fi
done
printf "| **convlens end-to-end** | **%.1f** | **%.1f** | **%.0f** |\n" "$tot" "$cpu" "$(echo "$peak / 1024" | bc -l)"
if [ -f "$TIMES/oracle" ]; then
  row oracle "oracle reference.py"
  read -r os ok _ _ < "$TIMES/oracle"
  printf "\nspeed-up %.1fx, memory %.1fx less\n" "$(echo "$os / $tot" | bc -l)" "$(echo "$ok / $peak" | bc -l)"
  # the two agree?
  "$PYTHON" - "$OUT/oracle.json" "$OUT/shift/shift.json" <<'EOF' || true
import json, sys
o = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
cells = s["comparisons"][0]["cells"]
ours = {c["bin"]: c["kl"] for c in cells}
ok = [o["divergence"]["overall"]] + o["divergence"]["by_depth"]
worst = 0.0
for e in ok:
    a, b = e["kl"], ours.get("overall" if e["bin"] == "overall" else e["bin"])
    if a is not None and b is not None:
        worst = max(worst, abs(a - b) / max(abs(a), 1e-12))
print(f"\noracle vs convlens shift: overall KL {ok[0]['kl']:.6g} vs {ours['overall']:.6g}; "
      f"worst relative difference over {len(ok)} cells {worst:.2e}; "
      f"coef range {o['coef_range']} vs {s['coef_range']}")
EOF
fi
echo "$SIZE $N_MODELS $N_FILTERS $(cat "$TIMES"/build) $(cat "$TIMES"/basis) $(cat "$TIMES"/shift) $(cat "$TIMES"/aggregate) $(cat "$TIMES"/oracle 2>/dev/null || echo - -)" >> "$SCALE_DIR/results.txt"
if [ $KEEP = 0 ]; then rm -rf "$DB"; fi
