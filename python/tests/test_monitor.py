"""Training-time monitoring of a live model, and stem analysis of live objects."""

import numpy as np
import pytest

import convlens
from conftest import DEMO, need_torch


def test_monitor_follows_training():
    torch = need_torch()
    import zoo_models

    torch.manual_seed(0)
    model = zoo_models.build("resnet20")
    mon = convlens.Monitor(model)
    g0 = mon.step(epoch=0)
    assert list(g0.columns[:3]) == ["step", "seconds", "epoch"]
    first = convlens.quality(model)
    # same numbers as quality() of the same weights
    assert np.array_equal(mon.layers["variance_entropy"].to_numpy(), first.layers["variance_entropy"].to_numpy())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    mon.step(epoch=1, loss=1.0)
    assert len(mon.layers) == 2 * len(first.layers)
    assert sorted(mon.groups["epoch"].unique()) == [0, 1]
    e0 = mon.layers.loc[mon.layers["epoch"] == 0, "l2_norm"].to_numpy()
    e1 = mon.layers.loc[mon.layers["epoch"] == 1, "l2_norm"].to_numpy()
    assert not np.array_equal(e0, e1)  # training changed the weights and the monitor saw it
    after = convlens.quality(model)
    assert np.array_equal(e1, after.layers["l2_norm"].to_numpy())
    assert mon.groups["seconds"].min() > 0


def test_stem_of_a_live_module_equals_the_file(cli, tmp_path):
    torch = need_torch()
    import json

    import zoo_models
    from safetensors.torch import load_file

    p = DEMO / "resnet20_normal_s1.safetensors"
    images = DEMO / "adv_examples.npz"
    model = zoo_models.build("resnet20")
    model.load_state_dict(load_file(p))
    from_file = convlens.stem(p, images, key="resnet20_normal_s1")
    live = convlens.stem(model, images, key="resnet20_normal_s1", name="resnet20_normal_s1")
    cols = ["centre_share", "pre_change", "post_change", "relu_removed"]
    assert np.array_equal(from_file.models[cols].to_numpy(), live.models[cols].to_numpy())
    # and equal to the CLI
    out = tmp_path / "stem"
    cli("stem", p, "--images", images, "-o", out)
    doc = json.load(open(out / "stem.json"))
    rep = doc["reports"][0]
    assert rep["summary"]["relu_removed"] == from_file.report["summary"]["relu_removed"]
    assert rep["summary"]["centre_share"] == live.report["summary"]["centre_share"]
    # arrays in, too
    d = np.load(images)
    arr = convlens.stem(model, d["x"], d["resnet20_normal_s1"], mean=d["mean"], std=d["std"])
    assert np.array_equal(arr.models[cols].to_numpy(), live.models[cols].to_numpy())
    assert arr.figure is not None and arr.figure.svg.startswith("<")


def test_filter_figures_of_a_live_model():
    torch = need_torch()
    import xml.etree.ElementTree as ET

    import zoo_models

    m = zoo_models.build("resnet20")
    for fig in (convlens.filters(m), convlens.filters(m, "last"), convlens.rgb_filters(m)):
        assert ET.fromstring(fig.svg).tag.endswith("svg")
        assert fig._repr_png_()[:4] == b"\x89PNG"
    with pytest.raises(convlens.ArgumentError):
        convlens.filters(m, "no.such.layer")
