"""Training checkpoints as users have them (fixtures/checkpoints, written by real torch.save):
the Python API reads the same true conv layers as the CLI, and picks entries."""

import json

import pytest

import convlens
from conftest import FIXTURES, need_torch

CK = FIXTURES / "checkpoints"


def test_cifar_checkpoint_has_only_the_model_layers(cli_json):
    p = CK / "cifar_adam.pt"
    q = convlens.quality(p)
    want = cli_json("quality", "--format", "json", p)[0]
    assert q.report == want
    # the optimizer's Adam moments (same shapes as the weights) are not conv layers
    assert len(q.layers) == 5
    assert not any("exp_avg" in n for n in q.layers["weight_name"])


def test_entries_are_chosen_like_the_cli(cli_json):
    p = CK / "model_ema.pt"
    default = convlens.inspect(p)
    ema = convlens.inspect(p, entry="model_ema")
    assert ema.attrs["report"] == cli_json("inspect", "--format", "json", "--entry", "model_ema", p)[0]
    assert default.attrs["report"] == cli_json("inspect", "--format", "json", p)[0]
    with pytest.raises(convlens.FileError) as e:
        convlens.quality(p, entry="no_such_entry")
    assert e.value.path == str(p)


def test_entry_in_a_live_checkpoint_dict():
    torch = need_torch()
    obj = torch.load(CK / "cifar_adam.pt", weights_only=False)
    # a live training-checkpoint dict: the model's state dict under "net" is found
    q = convlens.quality(obj)
    assert len(q.layers) == 5
    assert list(q.layers["layer_norm"]) == list(convlens.quality(CK / "cifar_adam.pt").layers["layer_norm"])
