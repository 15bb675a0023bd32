"""The notebook-style example runs top to bottom on the demo zoo."""

import os
import runpy

from conftest import ROOT


def test_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVLENS_QUICKSTART_OUT", str(tmp_path / "out"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "examples" / "python_quickstart.py"), run_name="__main__")
    out = tmp_path / "out"
    assert (out / "first_layer.svg").read_text().lstrip().startswith("<")
    assert (out / "first_layer.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "basis.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "report" / "index.html").exists()
    text = capsys.readouterr().out
    assert "resnet20_robust_s0" in text and "relu_removed" in text
