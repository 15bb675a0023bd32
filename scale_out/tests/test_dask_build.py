"""A real Dask cluster (several worker processes on this machine) builds a zoo in pieces with
the convlens CLI; the merged database is byte for byte the single-process build, and `shift` and
`basis` give byte-identical outputs on both.

Needs the convlens binary: ``$CONVLENS_BIN`` or ``convlens`` on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import convlens_dask  # noqa: E402

REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
WORKERS = 3


def _binary() -> str:
    b = convlens_dask.convlens_bin()
    found = shutil.which(b)
    if found is None:
        pytest.fail(
            f"convlens binary {b!r} not found: build it (cargo build --release -p convlens-cli) "
            "and set CONVLENS_BIN to it"
        )
    return found


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    _binary()
    cluster = LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = Client(cluster)
    c.wait_for_workers(WORKERS, timeout=120)
    yield c
    c.close()
    cluster.close()


def tree(d: Path) -> dict[str, bytes]:
    """Every file and folder under ``d``: relative path -> bytes (b"" for folders)."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        out[rel + "/" if p.is_dir() else rel] = b"" if p.is_dir() else p.read_bytes()
    return out


def assert_same_tree(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb), f"{a} and {b} hold different files"
    differ = [k for k in ta if ta[k] != tb[k]]
    assert not differ, f"files differ between {a} and {b}: {differ}"


def run(*args: str) -> None:
    r = subprocess.run([_binary(), *args], capture_output=True, text=True)
    assert r.returncode == 0, f"convlens {' '.join(args)}: {r.stderr}"


def check_zoo(client, tmp_path: Path, zoo: Path, parts: int, meta: Path, pairs: Path, **kw):
    # the single-process build
    single = tmp_path / "single.db"
    r = subprocess.run(
        [_binary(), "db", "build", str(zoo), "--meta", str(meta), "-o", str(single)]
        + (["--formats", ",".join(kw["formats"])] if kw.get("formats") else []),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    # the same files in `parts` pieces on the cluster, by the shard selector
    res = convlens_dask.build_on_cluster(
        client, zoo, tmp_path / "dask.db", parts=parts, meta=meta, keep_parts=True, **kw
    )
    assert len(res["parts"]) == parts
    assert all(p["returncode"] == 0 for p in res["parts"]), res["parts"]
    # run by worker processes, not by this one
    assert os.getpid() not in {p["pid"] for p in res["parts"]}
    assert res["merge"]["returncode"] == 0, res["merge"]["stderr"]
    n_models = [len(list((Path(p["out"]) / "models").glob("*.json"))) for p in res["parts"]]
    assert sum(n_models) == len(list((single / "models").glob("*.json")))
    assert sum(1 for n in n_models if n > 0) >= 3, f"models per part: {n_models}"
    assert_same_tree(single, tmp_path / "dask.db")
    # and by file lists, in another grouping
    files = sorted(
        p.relative_to(zoo).as_posix()
        for p in zoo.rglob("*")
        if p.suffix in (".onnx", ".pt", ".ckpt", ".safetensors", ".npz", ".npy", ".pth", ".bin")
    )
    by_model: dict[str, list[str]] = {}
    for f in files:  # every file of a model in the same list (else: refused as a conflict)
        name = Path(f).name.split(".")[0]
        by_model.setdefault(name, []).append(f)
    lists = [[], [], []]
    for k, name in enumerate(sorted(by_model, reverse=True)):
        lists[k % 3].extend(by_model[name])
    res2 = convlens_dask.build_on_cluster(
        client, zoo, tmp_path / "lists.db", file_lists=lists, meta=meta, link=True, **kw
    )
    assert res2["merge"]["returncode"] == 0, res2["merge"]["stderr"]
    assert_same_tree(single, tmp_path / "lists.db")
    # the analyses agree byte for byte
    for db in ("single.db", "dask.db"):
        run("shift", str(tmp_path / db), "--by", "Robust", "--pairs", str(pairs), "-o", str(tmp_path / f"{db}.shift"))
        run("basis", str(tmp_path / db), "--by", "Robust", "-o", str(tmp_path / f"{db}.basis"))
    for what in ("shift", "basis"):
        a, b = tmp_path / f"single.db.{what}", tmp_path / f"dask.db.{what}"
        assert any(a.iterdir()), f"no {what} output"
        assert_same_tree(a, b)


def test_demo_zoo_in_three_pieces_on_a_local_cluster(client, tmp_path):
    assert len(client.scheduler_info()["workers"]) >= WORKERS
    zoo = REPO / "examples" / "demo-zoo"
    check_zoo(client, tmp_path, zoo, 3, zoo / "meta.csv", zoo / "pairings.csv")


def test_cifar10_mini_in_four_pieces_on_a_local_cluster(client, tmp_path):
    zoo = SHARED / "zoo" / "cifar10-mini"
    if not zoo.is_dir():
        print("SKIPPED: ../shared not found")
        pytest.skip("../shared not found")
    check_zoo(client, tmp_path, zoo, 4, zoo / "meta.csv", zoo / "pairings.csv", formats=["onnx"])
