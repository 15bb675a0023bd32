"""Shared fixtures: the CLI binary, the shared zoo, torch (required in CI)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
ZOO = SHARED / "zoo" / "cifar10-mini"
DEMO = ROOT / "examples" / "demo-zoo"
FIXTURES = ROOT / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cli_path() -> str:
    env = os.environ.get("CONVLENS_BIN")
    if env:
        return env
    for p in (ROOT / "target" / "release" / "convlens", ROOT / "target" / "debug" / "convlens"):
        if p.exists():
            return str(p)
    found = shutil.which("convlens")
    if found:
        return found
    pytest.fail("no convlens binary: build it (cargo build -p convlens-cli) or set CONVLENS_BIN")


@pytest.fixture(scope="session")
def cli():
    """Runs the convlens CLI; returns (exit code, stdout, stderr)."""
    exe = cli_path()

    def run(*args, check=True):
        r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"convlens {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
        return r

    return run


@pytest.fixture(scope="session")
def cli_json(cli):
    def run(*args):
        return json.loads(cli(*args).stdout)

    return run


def need_shared():
    if not ZOO.is_dir():
        if IN_CI:
            pytest.fail("../shared not found (CI must have it)")
        pytest.skip("SKIPPED: ../shared not found")
    return ZOO


def need_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("torch is not installed (CI installs it for these tests)")
        pytest.skip("SKIPPED: torch not installed")
    sys.path.insert(0, str(Path(__file__).parent))
    import torch

    return torch


@pytest.fixture(scope="session")
def zoo():
    return need_shared()


@pytest.fixture(scope="session")
def torch_mod():
    return need_torch()
