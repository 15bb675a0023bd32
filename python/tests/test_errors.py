"""Errors are Python exceptions naming the file; long work releases the interpreter lock."""

import os
import threading
import time

import numpy as np
import pytest

import convlens
from conftest import DEMO, FIXTURES

HOSTILE = sorted(
    p for p in (FIXTURES / "hostile").iterdir() if p.suffix in (".pt", ".pth", ".onnx", ".safetensors", ".npy")
)


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.name)
def test_hostile_files_raise_file_error_with_path(path, cli):
    with pytest.raises(convlens.FileError) as e:
        convlens.quality(path)
    assert str(path) in str(e.value)
    assert e.value.path == str(path)
    assert e.value.reason and e.value.reason in str(e.value)
    assert isinstance(e.value, convlens.Error)
    # the same reason as the CLI gives
    r = cli("quality", path, check=False)
    assert r.returncode == 1 and e.value.reason in r.stderr


def test_hostile_inspect_raises_file_error():
    for p in HOSTILE:
        if p.name in ("nan_inf_weights.safetensors", "zero_size.safetensors", "memo_bomb.pt"):
            continue  # readable files with unusable weights: inspect lists them
        with pytest.raises(convlens.FileError, match=p.name):
            convlens.inspect(p)


def test_missing_file():
    with pytest.raises(convlens.FileError) as e:
        convlens.quality("/no/such/model.onnx")
    assert e.value.path == "/no/such/model.onnx" and "cannot read" in e.value.reason


def test_bad_arguments():
    w = np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(convlens.ArgumentError, match="kernel"):
        convlens.quality(w, kernel="3by3")
    with pytest.raises(convlens.ArgumentError) as e:
        convlens.quality(object())
    assert isinstance(e.value, ValueError)
    with pytest.raises(convlens.ArgumentError, match="complex|unsupported"):
        convlens.quality({"w": np.zeros((2, 2, 3, 3), np.complex64)})
    with pytest.raises(convlens.ArgumentError, match="no tensors"):
        convlens.quality({"epoch": 3, "acc": 0.5})


def test_torch_is_not_imported():
    import subprocess
    import sys

    code = "import convlens, sys; convlens.quality(%r); print('torch' in sys.modules)" % str(
        DEMO / "resnet20_normal_s1.safetensors"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_interpreter_lock_is_released():
    """A second Python thread keeps running while the engine works."""
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    convlens._convlens._spin(0.5)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    # with the lock held the counter could not tick at all during the half second
    assert len(during) > 50, len(during)
