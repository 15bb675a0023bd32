#!/usr/bin/env bash
# Partial builds + merge at scale: the synthetic zoo of bench/scale/run.sh built (1) by one
# `convlens db build`, (2) as PARTS partial databases on a Dask LocalCluster of WORKERS worker
# processes (scale_out/convlens_dask.py, each part `convlens -j THREADS db build --part i/PARTS`)
# then `convlens db merge --link`, and the merge alone with links and with copies; checks that
# every result is byte-identical to (1) (file list + SHA-256 of every file, so that one database
# at a time is on disk; DROP_ZOO=1 deletes the regenerable zoo before the copying merge) and prints the
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
# the file list + SHA-256 of a database (what `diff -r` compares), so that only one database
# needs to be on disk at a time (100 M: 3.4 GB each)
sums() { (cd "$1" && find . -type d | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
rm -rf "$Z/single.db" "$Z/merged.db" "$Z/copied.db" "$Z/parts"
echo "== single db build" >&2
/usr/bin/time -f "%e %M %U %S" -o "$Z/t.single" "$CL" db build "$Z/zoo" --meta "$Z/meta.csv" -o "$Z/single.db" 2> "$Z/single.log"
DB_BYTES=$(du -sb "$Z/single.db" | cut -f1)
sums "$Z/single.db" > "$Z/single.sums"
rm -rf "$Z/single.db"
echo "== $PARTS parts on $WORKERS Dask workers, then merge --link" >&2
cat > "$Z/recipe.py" <<'PY'
import json, sys, time
from dask.distributed import Client, LocalCluster

if __name__ == "__main__":  # worker processes are spawned: they re-import this file
    sys.path.insert(0, sys.argv[5])
    import convlens_dask
    z, parts, workers, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as cl:
        cl.wait_for_workers(workers)
        t_start = time.perf_counter() - t0
        r = convlens_dask.build_on_cluster(cl, f"{z}/zoo", f"{z}/merged.db", parts=parts,
                                           work_dir=f"{z}/parts", keep_parts=True, link=True,
                                           meta=f"{z}/meta.csv", threads=threads)
    r["cluster_start_seconds"] = t_start
    for p in r["parts"]:
        p.pop("stderr")
    print(json.dumps(r, indent=1))
PY
CONVLENS_BIN=$CL /usr/bin/time -f "%e %M %U %S" -o "$Z/t.dask" "$PYTHON" "$Z/recipe.py" "$Z" "$PARTS" "$WORKERS" "$THREADS" "$REPO/scale_out" > "$Z/dask.json"
sums "$Z/merged.db" | cmp - "$Z/single.sums" && echo "Dask build + merge --link == single build (every file's SHA-256)" >&2
rm -rf "$Z/merged.db"
# the merge alone, from the kept parts, timed by /usr/bin/time: hard links, then copies
/usr/bin/time -f "%e %M %U %S" -o "$Z/t.link" "$CL" db merge --link "$Z"/parts/part-* -o "$Z/merged.db" 2> "$Z/link.log"
sums "$Z/merged.db" | cmp - "$Z/single.sums" && echo "merge --link == single build" >&2
rm -rf "$Z/merged.db"
if [ "${DROP_ZOO:-0}" = 1 ]; then rm -rf "$Z/zoo" "$Z/meta.csv"; fi   # regenerable; frees disk for the copy
/usr/bin/time -f "%e %M %U %S" -o "$Z/t.copy" "$CL" db merge "$Z"/parts/part-* -o "$Z/copied.db" 2> "$Z/copy.log"
sums "$Z/copied.db" | cmp - "$Z/single.sums" && echo "merge (copy) == single build" >&2
rm -rf "$Z/copied.db" "$Z/parts"
"$PYTHON" - "$Z" "$DB_BYTES" <<'PY'
import json, sys
z = sys.argv[1]
t = lambda n: list(map(float, open(f"{z}/t.{n}").read().split()))
s, d, l, c = t("single"), t("dask"), t("link"), t("copy")
r = json.load(open(f"{z}/dask.json"))
ps = sorted(p["seconds"] for p in r["parts"])
print(f"database {int(sys.argv[2]) / 1e9:.2f} GB")
print("| step | wall s | CPU s (user+sys) | peak RSS MiB |")
print("| --- | ---: | ---: | ---: |")
print(f"| single `db build` | {s[0]:.1f} | {s[2]+s[3]:.1f} | {s[1]/1024:.0f} |")
print(f"| Dask: cluster start | {r['cluster_start_seconds']:.1f} | | |")
print(f"| Dask: {len(ps)} partial builds (each {ps[0]:.1f}–{ps[-1]:.1f} s, sum {sum(ps):.1f} s) | {r['build_seconds']:.1f} | | |")
print(f"| Dask: `db merge --link` (in the recipe) | {r['merge']['seconds']:.2f} | | |")
print(f"| Dask recipe total (python process) | {d[0]:.1f} | {d[2]+d[3]:.1f} (driver only) | {d[1]/1024:.0f} |")
print(f"| `db merge --link` alone | {l[0]:.2f} | {l[2]+l[3]:.2f} | {l[1]/1024:.0f} |")
print(f"| `db merge` (copy) alone | {c[0]:.1f} | {c[2]+c[3]:.1f} | {c[1]/1024:.0f} |")
PY
