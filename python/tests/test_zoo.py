"""Every model of ../shared/zoo/cifar10-mini: DataFrames from paths, from state dicts loaded
with real torch, from rebuilt nn.Modules and from numpy arrays equal the CLI's JSON."""

import csv
import math
import os

import numpy as np
import pandas as pd
import pytest

import convlens
from conftest import ZOO, need_shared, need_torch

KEEP = ("n_conv_depths", "n_conv_layers", "n_transposed_layers", "layers", "depth_groups", "skipped")


def zoo_models():
    if not ZOO.is_dir():
        return []
    with open(ZOO / "meta.csv", newline="") as f:
        return [r["Name"] for r in csv.DictReader(f)]


def files_of(name):
    out = []
    for root, _, files in os.walk(ZOO):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            if fn.endswith((".csv", ".data")) or fn == "adv_examples.npz":
                continue
            if convlens._convlens.model_name(p) == name:
                out.append(p)
    return out


def same(a, b, where=""):
    """Exact equality of parsed JSON values (NaN == NaN, None == NaN for floats)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {a.keys()} vs {b.keys()}"
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert b is None or (isinstance(b, float) and math.isnan(b)), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def frame_matches_json(q, rep):
    """The DataFrames hold exactly the JSON's numbers, column by column."""
    layers = rep["layers"]
    assert len(q.layers) == len(layers)
    for i, l in enumerate(layers):
        row = q.layers.iloc[i]
        flat = dict(l)
        flat.update({f"tcq_{k}": v for k, v in l["tcq"].items()})
        flat["kh"], flat["kw"] = l["kernel"]
        flat["layer"] = l["name"]
        for col in q.layers.columns:
            if col in ("file", "format"):
                continue
            want = flat[col]
            got = row[col]
            if want is None:
                assert got is None or (isinstance(got, float) and math.isnan(got)), (col, got)
            elif isinstance(want, float):
                assert float(got) == want, (i, col, got, want)
            else:
                assert got == want, (i, col, got, want)
    groups = rep["depth_groups"]
    assert len(q.groups) == len(groups)
    for i, g in enumerate(groups):
        row = q.groups.iloc[i]
        assert row["depth_group"] == g["group"]
        for col in ("layers", "filters", "sparse_filters", "nonsparse_filters", "sparsity", "orthogonality"):
            assert row[col] == g[col], (i, col)
        ve = g["variance_entropy"]
        assert (math.isnan(row["variance_entropy"]) if ve is None else row["variance_entropy"] == ve)


@pytest.mark.parametrize("name", zoo_models() or ["(no ../shared)"])
def test_paths_equal_cli_json(name, cli_json):
    need_shared()
    files = files_of(name)
    assert files, f"no file of {name}"
    for p in files:
        want = cli_json("quality", "--format", "json", p)[0]
        q = convlens.quality(p)
        same(q.report, want, p)
        frame_matches_json(q, want)
        ins = convlens.inspect(p)
        same(ins.attrs["report"], cli_json("inspect", "--format", "json", p)[0], p)


def load_state_dict(torch, name, files):
    """The model's state dict with real torch: torch.load of a .pt/.ckpt, else safetensors."""
    from safetensors.torch import load_file

    for p in files:
        if p.endswith(".module.pt"):
            import zoo_models

            return zoo_models.load_pickled_module(p).state_dict(), p
    for p in files:
        if p.endswith((".pt", ".ckpt")) and "torchscript" not in p:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            if "state_dict" in obj:
                obj = {k.removeprefix("model."): v for k, v in obj["state_dict"].items()}
            return obj, p
    p = next(p for p in files if p.endswith(".safetensors") and ".fp16." not in p and ".bf16." not in p)
    return load_file(p), p


@pytest.mark.parametrize("name", zoo_models() or ["(no ../shared)"])
def test_state_dict_module_and_arrays_equal_cli_json(name, cli, cli_json, tmp_path):
    need_shared()
    torch = need_torch()
    import zoo_models

    files = files_of(name)
    sd, origin = load_state_dict(torch, name, files)
    arch = name.rsplit("_", 2)[0]
    module = zoo_models.build(arch)
    module.load_state_dict(sd, strict=True)
    # the CLI's answer for the same weights as torch writes them
    saved = tmp_path / f"{name}.pt"
    torch.save(module.state_dict(), saved)
    want = cli_json("quality", "--format", "json", saved)[0]
    want_ins = cli_json("inspect", "--format", "json", saved)[0]
    arrays = {k: v.numpy() for k, v in module.state_dict().items()}
    for what, obj in [("state dict", module.state_dict()), ("module", module), ("arrays", arrays)]:
        q = convlens.quality(obj)
        for k in KEEP:
            same(q.report[k], want[k], f"{name} {what}: {k}")
        frame_matches_json(q, want)
        ins = convlens.inspect(obj)
        for k in ("n_conv_depths", "layers", "totals", "skipped"):
            same(ins.attrs["report"][k], want_ins[k], f"{name} {what}: inspect {k}")
    # the per-layer metrics also equal those of the original file, layer by layer
    orig = {l["name"]: l for l in cli_json("quality", "--format", "json", origin)[0]["layers"]}
    q = convlens.quality(module)
    for l in q.report["layers"]:
        o = orig[l["name"]]
        for k in ("filters", "layer_norm", "sparsity", "variance_entropy", "orthogonality", "l1_norm", "l2_norm", "tcq"):
            same(l[k], o[k], f"{name} {l['name']} {k}")


def test_half_precision_tensors_read_in_place(zoo):
    torch = need_torch()
    from safetensors.torch import load_file

    for suffix, dt in [("fp16", torch.float16), ("bf16", torch.bfloat16)]:
        p = str(zoo / f"wrn16_2_robust_s0.{suffix}.safetensors")
        sd = load_file(p)
        assert sd["conv1.weight"].dtype == dt
        got = convlens.quality(sd).report
        want = convlens.quality(p).report
        for k in ("layers", "depth_groups"):
            a, b = got[k], want[k]
            if k == "layers":
                # names and metrics equal; depth order differs (mapping order vs natural sort)
                a = sorted(a, key=lambda l: l["name"])
                b = sorted(b, key=lambda l: l["name"])
                for x, y in zip(a, b):
                    for f in ("name", "filters", "layer_norm", "sparsity", "variance_entropy", "orthogonality", "tcq"):
                        same(x[f], y[f], f"{suffix} {x['name']} {f}")


def test_strided_and_non_contiguous_arrays():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    base = convlens.quality({"conv.weight": w}).report["layers"][0]
    # Fortran order, a strided view (every other output channel of a bigger array), float64
    big = np.zeros((16, 4, 3, 3), np.float32)
    big[::2] = w
    for arr in (np.asfortranarray(w), big[::2], w.astype(np.float64)):
        got = convlens.quality({"conv.weight": arr}).report["layers"][0]
        for k in ("layer_norm", "sparsity", "variance_entropy", "orthogonality", "tcq"):
            assert got[k] == base[k] or k == "tcq" and got[k] == base[k], k
    # negative strides are copied, not refused
    flipped = np.ascontiguousarray(w[::-1])[::-1]
    got = convlens.quality({"conv.weight": flipped}).report["layers"][0]
    assert got["layer_norm"] == base["layer_norm"]
    # a single 4-D array is one conv layer
    one = convlens.quality(w)
    assert len(one.layers) == 1 and one.layers.loc[0, "filters"] == 32
    assert one.layers.loc[0, "layer_norm"] == float(np.abs(w).max())
