#!/usr/bin/env bash
# Runs every CLI command on the demo zoo and on ../shared/zoo/cifar10-mini (when present) with the
# convlens binary BIN, writing all outputs under OUT, and prints one `sha256  path` line per output
# file (sorted). Two runs of it, e.g. before and after a refactoring, prove byte-identical output:
#
#   bash scripts/outputs.sh target/release/convlens /tmp/before > /tmp/before.sha
#   bash scripts/outputs.sh target/release/convlens /tmp/after  > /tmp/after.sha
#   diff /tmp/before.sha /tmp/after.sha
set -euo pipefail
BIN=$(realpath "${1:?usage: outputs.sh BIN OUT}")
OUT=${2:?usage: outputs.sh BIN OUT}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(realpath "$OUT")
cd "$ROOT"
run() { local name=$1; shift; "$BIN" "$@" > "$OUT/$name.stdout" 2> "$OUT/$name.stderr" || echo "exit $?" > "$OUT/$name.exit"; }
zoo() {
  local tag=$1 dir=$2; shift 2
  run "$tag-inspect" inspect --format csv "$dir"
  run "$tag-inspect-json" inspect --format json --kernel all "$dir"
  run "$tag-quality" quality --format csv "$dir"
  run "$tag-quality-json" quality --format json --kernel all "$dir"
  run "$tag-quality-groups" quality --format csv --groups "$dir"
  run "$tag-fingerprint" fingerprint --format json "$dir"
  run "$tag-db-build" db build "$dir" "$@" -o "$OUT/$tag.db"
  run "$tag-db-status" db status "$OUT/$tag.db"
  run "$tag-basis" basis "$OUT/$tag.db" --by Robust -o "$OUT/$tag-basis"
  run "$tag-shift" shift "$OUT/$tag.db" --by Robust -o "$OUT/$tag-shift"
  run "$tag-kl" kl-matrix "$OUT/$tag.db" --by model -o "$OUT/$tag-kl"
  run "$tag-aggregate" aggregate "$OUT/$tag.db" --by Robust -o "$OUT/$tag-aggregate"
  run "$tag-report" report "$OUT/$tag.db" -o "$OUT/$tag-report"
}
zoo demo examples/demo-zoo
run demo-report-main report examples/demo-zoo -o "$OUT/demo-report-main"
S="$ROOT/../shared/zoo/cifar10-mini"
if [ -d "$S" ]; then
  zoo mini "$S" --meta "$S/meta.csv" --formats onnx
  run mini-shift-pairs shift "$OUT/mini.db" --by Robust --pairs "$S/pairings.csv" --permutations 500 -o "$OUT/mini-shift-pairs"
  run mini-stem stem "$S"/*.onnx --images "$S/adv_examples.npz" -o "$OUT/mini-stem"
else
  echo "outputs.sh: ../shared not found, cifar10-mini skipped" >&2
fi
cd "$OUT" && find . -type f | sort | xargs sha256sum
