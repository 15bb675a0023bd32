#!/usr/bin/env bash
# Runs every CLI command on the demo zoo and on ../shared/zoo/cifar10-mini (when present) with the
# convlens binary BIN, writing all outputs under OUT, and prints one `sha256  path` line per output
# file (sorted). Two runs of it, e.g. before and after a refactoring, prove byte-identical output:
#
#   bash scripts/outputs.sh target/release/convlens /tmp/before > /tmp/before.sha
#   bash scripts/outputs.sh target/release/convlens /tmp/after  > /tmp/after.sha
#   diff /tmp/before.sha /tmp/after.sha
#
# BIG_ZOO=DIR also runs db build, basis, shift, kl-matrix and aggregate on the synthetic benchmark
# zoo DIR (DIR/zoo, DIR/meta.csv, e.g. /work/scale/z100M from `bench/scale/run.sh 100M --keep`)
# and prints the hashes of its database and outputs; the database is deleted after hashing.
set -euo pipefail
BIN=$(realpath "${1:?usage: outputs.sh BIN OUT}")
OUT=${2:?usage: outputs.sh BIN OUT}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(realpath "$OUT")
# Everything runs inside OUT with relative paths (inputs through the link `src` to the checkout),
# so that no output depends on where the checkout or OUT are.
ln -s "$ROOT" "$OUT/src"
cd "$OUT"
run() { local name=$1; shift; "$BIN" "$@" > "$name.stdout" 2> "$name.stderr" || echo "exit $?" > "$name.exit"; }
zoo() {
  local tag=$1 dir=$2; shift 2
  run "$tag-inspect" inspect --format csv "$dir"
  run "$tag-inspect-json" inspect --format json --kernel all "$dir"
  run "$tag-quality" quality --format csv "$dir"
  run "$tag-quality-json" quality --format json --kernel all "$dir"
  run "$tag-quality-groups" quality --format csv --groups "$dir"
  run "$tag-fingerprint" fingerprint --format json "$dir"
  run "$tag-db-build" db build "$dir" "$@" -o "$tag.db"
  run "$tag-db-status" db status "$tag.db"
  run "$tag-basis" basis "$tag.db" --by Robust -o "$tag-basis"
  run "$tag-shift" shift "$tag.db" --by Robust -o "$tag-shift"
  run "$tag-shift-pairs" shift "$tag.db" --by Robust --pairs "$dir/pairings.csv" --permutations 500 -o "$tag-shift-pairs"
  run "$tag-kl" kl-matrix "$tag.db" --by model -o "$tag-kl"
  run "$tag-aggregate" aggregate "$tag.db" --by Robust -o "$tag-aggregate"
  run "$tag-report" report "$tag.db" -o "$tag-report"
}
D=src/examples/demo-zoo
zoo demo "$D" --meta "$D/meta.csv"
run demo-report-main report "$D" -o demo-report-main
run demo-stem stem "$D"/*.onnx "$D"/*.safetensors --images "$D/adv_examples.npz" -o demo-stem
S=src/../shared/zoo/cifar10-mini
if [ -d "$S" ]; then
  zoo mini "$S" --meta "$S/meta.csv" --formats onnx
  run mini-stem stem "$S"/*.onnx --images "$S/adv_examples.npz" -o mini-stem
else
  echo "outputs.sh: ../shared not found, cifar10-mini skipped" >&2
fi
if [ -n "${BIG_ZOO:-}" ]; then
  B=$(realpath "$BIG_ZOO")
  ln -s "$B" big-zoo
  run big-db-build db build big-zoo/zoo --meta big-zoo/meta.csv -o big.db
  run big-basis basis big.db --by Robust -o big-basis
  run big-shift shift big.db --by Robust -o big-shift
  run big-kl kl-matrix big.db --by Robust -o big-kl
  run big-aggregate aggregate big.db --by Robust -o big-aggregate
  find big.db -type f | sort | xargs sha256sum > big-db.sha256
  rm -rf big.db
fi
find . -type f | sort | xargs sha256sum
