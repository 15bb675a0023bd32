"""Build a convlens filter database in pieces on a Dask cluster and merge the pieces exactly.

Every piece is an ordinary ``convlens db build`` of part of the zoo (``--part I/N``, or a list of
files), run by a worker as a subprocess of the ``convlens`` binary (``$CONVLENS_BIN``, default
``convlens`` on ``PATH``); the driver then runs ``convlens db merge``, whose result is byte for
byte the database a single ``db build`` of the same files writes. Nothing here needs the convlens
Python package.

As a module::

    from dask.distributed import Client, LocalCluster
    import convlens_dask
    with LocalCluster(n_workers=8, threads_per_worker=1) as cluster, Client(cluster) as client:
        convlens_dask.build_on_cluster(client, "zoo/", "zoo.db", parts=8, meta="zoo/meta.csv")

From the shell::

    python -m convlens_dask ZOO -o DB --parts 8 --workers 8 --meta ZOO/meta.csv
    python -m convlens_dask ZOO -o DB --parts 64 --scheduler tcp://host:8786   # existing cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["convlens_bin", "build_part", "merge", "build_on_cluster", "main"]


def convlens_bin() -> str:
    """The convlens binary: ``$CONVLENS_BIN``, else ``convlens`` on ``PATH``."""
    return os.environ.get("CONVLENS_BIN") or "convlens"


def _run(cmd: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """Runs convlens; exit code 1 (some models failed, the database holds the rest) is a result,
    anything else an error that names the command and carries its stderr."""
    r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {r.returncode}:\n{r.stderr.strip()}"
        )
    return r


def build_part(
    zoo: str | os.PathLike,
    out: str | os.PathLike,
    part: tuple[int, int] | None = None,
    files: Iterable[str] | None = None,
    meta: str | os.PathLike | None = None,
    formats: Sequence[str] = (),
    kernel: str | None = None,
    threads: int | None = 1,
) -> dict:
    """Builds one partial database ``out`` of ``zoo``: part ``(i, n)`` of the name-sorted model
    list, or the ``files`` given (paths relative to ``zoo``). Runs where it is called (on a Dask
    worker when submitted). Returns what happened: output folder, exit code, seconds, pid, stderr.
    """
    cmd = [convlens_bin()]
    if threads:
        cmd += ["-j", str(threads)]
    cmd += ["db", "build", os.fspath(zoo), "-o", os.fspath(out)]
    if meta is not None:
        cmd += ["--meta", os.fspath(meta)]
    if formats:
        cmd += ["--formats", ",".join(formats)]
    if kernel:
        cmd += ["--kernel", kernel]
    stdin = None
    if part is not None:
        cmd += ["--part", f"{part[0]}/{part[1]}"]
    if files is not None:
        stdin = "".join(f"{f}\n" for f in files)
        cmd += ["--files", "-"]
    t0 = time.perf_counter()
    r = _run(cmd, stdin)
    return {
        "out": os.fspath(out),
        "returncode": r.returncode,
        "seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
        "stderr": r.stderr,
    }


def merge(parts: Sequence[str | os.PathLike], out: str | os.PathLike, link: bool = False) -> dict:
    """Merges partial databases into the new database ``out`` (``convlens db merge``); with
    ``link`` the shards are hard-linked instead of copied (same file system)."""
    t0 = time.perf_counter()
    cmd = [convlens_bin(), "db", "merge", *map(os.fspath, parts), "-o", os.fspath(out)]
    r = _run(cmd + (["--link"] if link else []))
    return {
        "out": os.fspath(out),
        "returncode": r.returncode,
        "seconds": time.perf_counter() - t0,
        "stderr": r.stderr,
    }


def build_on_cluster(
    client,
    zoo: str | os.PathLike,
    out: str | os.PathLike,
    parts: int | None = None,
    file_lists: Sequence[Sequence[str]] | None = None,
    work_dir: str | os.PathLike | None = None,
    keep_parts: bool = False,
    link: bool = False,
    **build_args,
) -> dict:
    """Builds ``zoo`` into ``out`` on the Dask ``client``'s cluster: one task per part (``parts``
    parts by the shard selector, or one per list of ``file_lists``), then one merge on the driver.

    The workers and the driver must see ``zoo`` and ``work_dir`` (default: a temporary folder
    beside ``out``) at the same paths (a shared file system); ``build_args`` go to
    :func:`build_part` (``meta``, ``formats``, ``kernel``, ``threads``); ``link`` hard-links the
    shards into ``out`` instead of copying them. Returns the per-part results and the merge's.
    """
    if (parts is None) == (file_lists is None):
        raise ValueError("give exactly one of parts= and file_lists=")
    out = Path(out)
    if work_dir is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=out.name + ".parts-", dir=out.parent))
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    n = parts if parts is not None else len(file_lists)
    if n < 1:
        raise ValueError("nothing to build: no parts")
    dirs = [work / f"part-{i:05d}-of-{n:05d}" for i in range(n)]
    t0 = time.perf_counter()
    if parts is not None:
        futures = [
            client.submit(build_part, zoo, d, part=(i, n), pure=False, **build_args)
            for i, d in enumerate(dirs)
        ]
    else:
        futures = [
            client.submit(build_part, zoo, d, files=list(f), pure=False, **build_args)
            for f, d in zip(file_lists, dirs)
        ]
    built = client.gather(futures)
    t_build = time.perf_counter() - t0
    merged = merge(dirs, out, link=link)
    if not keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "parts": built,
        "merge": merged,
        "build_seconds": t_build,
        "total_seconds": time.perf_counter() - t0,
        "work_dir": os.fspath(work),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convlens_dask``: build a zoo in parts on a local or existing Dask cluster."""
    ap = argparse.ArgumentParser(prog="python -m convlens_dask", description=__doc__.split("\n")[0])
    ap.add_argument("zoo", help="zoo folder (seen at the same path by every worker)")
    ap.add_argument("-o", "--output", required=True, help="database folder to create")
    ap.add_argument("--parts", type=int, default=None, help="number of partial databases (default: workers)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (without --scheduler)")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
    ap.add_argument("--meta", help="meta table (CSV)")
    ap.add_argument("--formats", default="", help="only these extensions, comma-separated")
    ap.add_argument("--kernel", default=None, help="kernel sizes: 3x3 (default), all, KxK")
    ap.add_argument("--threads", type=int, default=1, help="threads per partial build (convlens -j)")
    ap.add_argument("--work-dir", help="where the partial databases go (shared by all workers)")
    ap.add_argument("--keep-parts", action="store_true", help="keep the partial databases")
    ap.add_argument("--link", action="store_true", help="hard-link the shards when merging (same file system)")
    a = ap.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    formats = [f for f in a.formats.split(",") if f]
    args = dict(meta=a.meta, formats=formats, kernel=a.kernel, threads=a.threads)
    if a.scheduler:
        cluster = None
        client = Client(a.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        n = a.parts or len(client.scheduler_info()["workers"])
        r = build_on_cluster(
            client,
            a.zoo,
            a.output,
            parts=n,
            work_dir=a.work_dir,
            keep_parts=a.keep_parts,
            link=a.link,
            **args,
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    for p in r["parts"]:
        print(f"built {p['out']} in {p['seconds']:.2f} s (exit {p['returncode']})", file=sys.stderr)
    sys.stderr.write(r["merge"]["stderr"])
    print(
        f"{n} parts built in {r['build_seconds']:.2f} s, merged in {r['merge']['seconds']:.2f} s, "
        f"total {r['total_seconds']:.2f} s -> {a.output}",
        file=sys.stderr,
    )
    failed = any(p["returncode"] for p in r["parts"]) or r["merge"]["returncode"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
