"""convlens: look inside trained CNNs through their convolution filters.

The same Rust engine as the ``convlens`` command-line tool: read checkpoints of any format
(ONNX, PyTorch, safetensors, NumPy) or live ``torch.nn.Module`` objects, state dicts and
arrays; measure filter quality (sparsity, variance entropy, orthogonality, norms) as Gavrikov
& Keuper do; build filter databases of model zoos and compare groups of models (PCA basis,
distribution shift, KL matrices, per-model aggregates); draw the papers' figures. Results are
pandas DataFrames with the CLI's CSV columns; figures show inline in notebooks.

>>> import convlens
>>> q = convlens.quality("model.safetensors")      # or a torch.nn.Module / state dict
>>> q.groups                                       # per depth group
>>> db = convlens.Database.build("zoo/", meta="zoo/meta.csv", out="zoo.db")
>>> db.shift(by="Robust").cells
"""

from . import _convlens
from .analysis import Quality, Stem, fingerprint, inspect, quality, stem
from .database import Database, Report, Shift, report
from .errors import ArgumentError, Error, FileError
from .figures import Figure, filters, rgb_filters
from .monitor import Monitor

__version__ = _convlens.__version__

__all__ = [
    "ArgumentError",
    "Database",
    "Error",
    "Figure",
    "FileError",
    "Monitor",
    "Quality",
    "Report",
    "Shift",
    "Stem",
    "filters",
    "fingerprint",
    "inspect",
    "quality",
    "report",
    "rgb_filters",
    "set_threads",
    "stem",
]


def set_threads(n: int) -> None:
    """Sets the number of worker threads of the engine (once, before the first analysis).
    Results never depend on it."""
    _convlens.set_threads(n)
