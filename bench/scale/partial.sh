#!/usr/bin/env bash
# Partial builds + merge at scale: the synthetic zoo of bench/scale/run.sh built (1) by one
# `convlens db build`, (2) as PARTS partial databases on a Dask LocalCluster of WORKERS worker
# processes (scale_out/convlens_dask.py, each part `convlens -j THREADS db build --part i/PARTS`)
# then `convlens db merge`; checks that (2) is byte-identical to (1) (`diff -r`) and prints the
# times. Run by hand (CPU-heavy); not a test.
#
# usage: bench/scale/partial.sh SIZE     (SIZE as for run.sh: 10M, 100M, ...)
# environment: as run.sh (REPO, SCALE_DIR, CARGO_TARGET_DIR), plus
#   PARTS (default 8), WORKERS (default: cores), THREADS (per part, default 1),
#   PYTHON (a python with dask[distributed], default /work/venv/bin/python)
set -euo pipefail
SIZE=${1:?usage: partial.sh SIZE}
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
SCALE_DIR=${SCALE_DIR:-/work/scale}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-scale}
PYTHON=${PYTHON:-/work/venv/bin/python}
PARTS=${PARTS:-8}
WORKERS=${WORKERS:-$(nproc)}
THREADS=${THREADS:-1}
Z=$SCALE_DIR/z$SIZE
(cd "$REPO" && cargo build --release -q -p convlens-cli)
(cd "$REPO/bench/synth" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR/synth cargo build --release -q)
CL=$CARGO_TARGET_DIR/release/convlens
SYNTH=$CARGO_TARGET_DIR/synth/release/convlens-synth
if [ ! -f "$Z/meta.csv" ]; then "$SYNTH" "$Z" --filters "$SIZE" --mix "${MIX:-all}"; fi
rm -rf "$Z/single.db" "$Z/merged.db" "$Z/parts"
echo "== single db build" >&2
/usr/bin/time -f "%e %M %U %S" -o "$Z/t.single" "$CL" db build "$Z/zoo" --meta "$Z/meta.csv" -o "$Z/single.db" 2> "$Z/single.log"
echo "== $PARTS parts on $WORKERS Dask workers, then merge" >&2
CONVLENS_BIN=$CL /usr/bin/time -f "%e %M %U %S" -o "$Z/t.dask" "$PYTHON" - "$Z" "$PARTS" "$WORKERS" "$THREADS" "$REPO/scale_out" <<'PY' > "$Z/dask.json"
import json, sys, time
sys.path.insert(0, sys.argv[5])
import convlens_dask
from dask.distributed import Client, LocalCluster
z, parts, workers, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as cl:
    cl.wait_for_workers(workers)
    t_start = time.perf_counter() - t0
    r = convlens_dask.build_on_cluster(cl, f"{z}/zoo", f"{z}/merged.db", parts=parts,
                                       work_dir=f"{z}/parts", keep_parts=True,
                                       meta=f"{z}/meta.csv", threads=threads)
r["cluster_start_seconds"] = t_start
for p in r["parts"]:
    p.pop("stderr")
print(json.dumps(r, indent=1))
PY
diff -r "$Z/single.db" "$Z/merged.db" && echo "merged == single build (diff -r)" >&2
# the merge alone, again, from the kept parts, timed by /usr/bin/time
rm -rf "$Z/merged2.db"
/usr/bin/time -f "%e %M %U %S" -o "$Z/t.merge" "$CL" db merge "$Z"/parts/part-* -o "$Z/merged2.db" 2> "$Z/merge.log"
diff -r "$Z/single.db" "$Z/merged2.db" && echo "merge re-run == single build (diff -r)" >&2
"$PYTHON" - "$Z" <<'PY'
import json, sys
z = sys.argv[1]
t = lambda n: list(map(float, open(f"{z}/t.{n}").read().split()))
s, d, m = t("single"), t("dask"), t("merge")
r = json.load(open(f"{z}/dask.json"))
ps = sorted(p["seconds"] for p in r["parts"])
print(f"| single `db build` | {s[0]:.1f} | {s[2]+s[3]:.1f} | {s[1]/1024:.0f} |")
print(f"| Dask: cluster start | {r['cluster_start_seconds']:.1f} | | |")
print(f"| Dask: {len(ps)} partial builds (per part {ps[0]:.1f}–{ps[-1]:.1f} s) | {r['build_seconds']:.1f} | | |")
print(f"| Dask: `db merge` (in the recipe) | {r['merge']['seconds']:.1f} | | |")
print(f"| Dask recipe total (python, /usr/bin/time) | {d[0]:.1f} | {d[2]+d[3]:.1f} (driver only) | {d[1]/1024:.0f} |")
print(f"| `db merge` alone (re-run) | {m[0]:.1f} | {m[2]+m[3]:.1f} | {m[1]/1024:.0f} |")
PY
du -sb "$Z/single.db" | awk '{printf "database %.2f GB\n", $1/1e9}'
rm -rf "$Z/merged2.db" "$Z/merged.db" "$Z/parts" "$Z/single.db"
