"""The Database methods equal the CLI's outputs for the same zoo."""

import filecmp
import json
import os
import threading

import numpy as np
import pandas as pd
import pytest

import convlens
from conftest import DEMO, ZOO, need_shared


def read_csv(path):
    # pandas >= 3 parses floats exactly by default; older versions need round_trip
    if int(pd.__version__.split(".")[0]) >= 3:
        return pd.read_csv(path)
    return pd.read_csv(path, float_precision="round_trip")


def assert_frame_equals_csv(df, path):
    want = read_csv(path)
    assert list(df.columns) == list(want.columns), path
    assert len(df) == len(want), path
    for c in df.columns:
        a, b = df[c].to_numpy(), want[c].to_numpy()
        for i, (x, y) in enumerate(zip(a, b)):
            xn = x is None or (isinstance(x, float) and np.isnan(x))
            yn = y is None or (isinstance(y, float) and np.isnan(y))
            if xn or yn:
                assert xn and yn, (path, c, i, x, y)
            elif isinstance(y, (float, np.floating)):
                assert float(x) == float(y), (path, c, i, x, y)
            elif isinstance(y, (bool, np.bool_)):
                assert str(x) == str(y), (path, c, i, x, y)
            else:
                assert x == y or str(x) == str(y), (path, c, i, x, y)


@pytest.fixture(scope="module")
def built(tmp_path_factory, cli):
    base = tmp_path_factory.mktemp("db")
    calls = []
    db = convlens.Database.build(
        DEMO, base / "py.db", meta=DEMO / "meta.csv", progress=lambda d, t, n: calls.append((d, t, n))
    )
    cli("db", "build", DEMO, "--meta", DEMO / "meta.csv", "-o", base / "cli.db")
    return db, base, calls


def test_build_equals_cli_build(built):
    db, base, calls = built
    py, cl = base / "py.db", base / "cli.db"
    for f in ("models.csv", "layers.csv", "status.csv", "models.parquet", "layers.parquet"):
        assert (py / f).read_bytes() == (cl / f).read_bytes(), f
    for root, _, files in os.walk(cl / "filters"):
        for fn in files:
            rel = os.path.relpath(os.path.join(root, fn), cl)
            assert filecmp.cmp(cl / rel, py / rel, shallow=False), rel
    # progress: every candidate file reported (4 models and adv_examples.npz), the last call
    # says all are done
    assert sorted(c[0] for c in calls) == [1, 2, 3, 4, 5] and {c[1] for c in calls} == {5}
    assert sorted(c[2] for c in calls)[0] == "adv_examples"
    st = db.status()
    assert (st.loc[st["model"].str.startswith("resnet20"), "outcome"] == "added").sum() == 4, st
    assert len(db.models()) == 4


def test_filters_are_memory_mapped_shards(built):
    db, base, _ = built
    f = db.filters("resnet20_robust_s0")
    assert isinstance(f, np.memmap) and f.dtype == np.float32 and f.shape[1:] == (3, 3)
    layers = db.layers()
    n = int(layers.loc[layers["model"] == "resnet20_robust_s0", "filters"].sum())
    assert f.shape[0] == n
    with pytest.raises(convlens.ArgumentError, match="no model"):
        db.filters("nope")


def test_analyses_equal_cli(built, cli, tmp_path):
    db, base, _ = built
    out = tmp_path / "cli"
    d = base / "cli.db"
    pairs = DEMO / "pairings.csv"
    cli("basis", d, "--by", "Robust", "-o", out)
    cli("shift", d, "--by", "Robust", "--pairs", pairs, "-o", out)
    cli("kl-matrix", d, "--by", "model", "-o", out)
    cli("aggregate", d, "--by", "Robust", "-o", out)
    b = db.basis(by="Robust")
    assert_frame_equals_csv(b, out / "basis.csv")
    assert b.attrs["report"] == json.load(open(out / "basis.json"))
    s = db.shift(by="Robust", pairs=pairs)
    assert_frame_equals_csv(s.cells, out / "shift.csv")
    assert_frame_equals_csv(s.pairs, out / "shift_pairs.csv")
    assert s.report == json.load(open(out / "shift.json"))
    k = db.kl_matrix(by="model")
    assert_frame_equals_csv(k, out / "kl_matrix.csv")
    m = k.pivot(index="a", columns="b", values="kl")
    assert m.shape == (4, 4) and np.allclose(np.diag(m.to_numpy()), 0)
    a = db.aggregate(by="Robust")
    assert_frame_equals_csv(a, out / "aggregate.csv")
    assert_frame_equals_csv(a.attrs["tests"], out / "aggregate_tests.csv")
    assert a.attrs["report"] == json.load(open(out / "aggregate.json"))


def test_selection_errors_are_argument_errors(built):
    db, _, _ = built
    with pytest.raises(convlens.ArgumentError):
        db.shift(by="NoSuchColumn")
    with pytest.raises(convlens.ArgumentError):
        db.basis(kernel="3x")
    with pytest.raises(convlens.FileError) as e:
        convlens.Database("/nonexistent/db")
    assert "/nonexistent/db" in str(e.value) and e.value.path == "/nonexistent/db"


def test_report_and_figures(built, tmp_path):
    db, base, _ = built
    r = db.report(tmp_path / "rep", figures=["basis", "depth", "boxes"])
    assert os.path.exists(r.index)
    ids = [f.id for f in r.figures]
    assert ids == ["basis", "divergence_by_depth", "metric_boxes"]
    import xml.etree.ElementTree as ET

    for f in r.figures:
        root = ET.fromstring(f.svg)
        assert root.tag.endswith("svg")
        assert f._repr_svg_() == f.svg
        assert f.to_png(scale=1.0)[:8] == b"\x89PNG\r\n\x1a\n"
        assert f.to_pdf()[:5] == b"%PDF-"
        f.save(tmp_path / f"{f.id}.pdf")
        assert (tmp_path / f"{f.id}.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(convlens.ArgumentError):
        r.figures[0].save(tmp_path / "x.gif")


def test_full_zoo_database_equals_cli(tmp_path, cli):
    zoo = need_shared()
    db = convlens.Database.build(zoo, tmp_path / "py", meta=zoo / "meta.csv", formats=["onnx"], progress=False)
    cli("db", "build", zoo, "--meta", zoo / "meta.csv", "--formats", "onnx", "-o", tmp_path / "cli")
    for f in ("models.csv", "layers.csv", "status.csv"):
        assert (tmp_path / "py" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes(), f
    out = tmp_path / "out"
    cli("shift", tmp_path / "cli", "--by", "Robust", "--pairs", zoo / "pairings.csv", "-o", out)
    s = db.shift(by="Robust", pairs=zoo / "pairings.csv")
    assert s.report == json.load(open(out / "shift.json"))
    assert_frame_equals_csv(s.cells, out / "shift.csv")


def tree(d):
    return {
        os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
        for r, _, fs in os.walk(d)
        for f in fs
    }


def test_partial_builds_merge_to_the_single_build(built, tmp_path):
    db, base, _ = built
    parts = []
    for i in range(3):
        p = tmp_path / f"part{i}"
        convlens.Database.build(DEMO, p, meta=DEMO / "meta.csv", part=(i, 3), progress=False)
        parts.append(p)
    # by file list as well
    files = ["resnet20_normal_s0.ckpt", "resnet20_robust_s1.onnx"]
    convlens.Database.build(DEMO, tmp_path / "byfiles", meta=DEMO / "meta.csv", files=files, progress=False)
    assert sorted(convlens.Database(tmp_path / "byfiles").models()["Name"]) == ["resnet20_normal_s0", "resnet20_robust_s1"]
    merged = convlens.Database.merge(parts, tmp_path / "merged")
    single = tree(base / "py.db")
    got = tree(tmp_path / "merged")
    assert got.keys() == single.keys()
    for k in single:
        assert got[k] == single[k], k
    assert merged.shift(by="Robust").report == db.shift(by="Robust").report
    with pytest.raises(convlens.ArgumentError):
        convlens.Database.build(DEMO, tmp_path / "bad", part=(3, 3), progress=False)
    with pytest.raises(convlens.Error):
        convlens.Database.merge(parts, tmp_path / "merged")  # not empty
