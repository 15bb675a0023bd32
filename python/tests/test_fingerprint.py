"""convlens.fingerprint equals `convlens fingerprint`; refuses models without enough filters."""

import json

import pytest

import convlens
from conftest import DEMO, FIXTURES


def test_fingerprint_equals_cli(cli):
    for p in sorted(DEMO.glob("resnet20_*")):
        want = json.loads(cli("fingerprint", "--format", "json", p).stdout)
        want = want[0] if isinstance(want, list) else want
        got = convlens.fingerprint(p)
        for k in ("n_filters", "layers", "spectrum", "probability_robust", "logit", "verdict", "evidence"):
            assert got[k] == want[k], (p, k)


def test_fingerprint_refuses_tiny_models():
    p = FIXTURES / "third_party" / "facenet-pytorch" / "pnet.pt"
    with pytest.raises(convlens.FileError) as e:
        convlens.fingerprint(p)
    assert e.value.path == str(p) and "non-sparse 3x3 filters" in e.value.reason
