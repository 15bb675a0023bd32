"""One model: its conv layers, their filter quality, its stem."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from . import _convlens
from ._frames import frame, with_report
from ._inputs import describe, source
from .figures import Figure

__all__ = ["inspect", "quality", "Quality", "stem", "Stem", "fingerprint"]


def inspect(model: Any, kernel: str = "all", name: Optional[str] = None, entry: Optional[str] = None) -> pd.DataFrame:
    """The convolution layers of a model, one row per layer, with the columns of
    ``convlens inspect --format csv``.

    ``model`` is a path (any format convlens reads), a ``torch.nn.Module``, a state dict
    (mapping of names to tensors or arrays) or a single array; ``kernel`` is ``"all"`` or a
    size such as ``"3x3"``; ``entry`` picks the model inside a PyTorch training checkpoint file
    (``"model_ema"``, ``"G"``, ...; default: the first non-averaged model, see the notes). The
    full report (skipped entries, notes) is in ``df.attrs["report"]``.
    """
    js, layers = _convlens.inspect(source(model, name), kernel, entry)
    return with_report(frame(layers), js)


@dataclass
class Quality:
    """Filter quality of one model: per layer (``layers``) and per depth group (``groups``), with
    the CLI's CSV columns, and the full JSON report (``report``) as ``convlens quality --format
    json`` writes it."""

    layers: pd.DataFrame
    groups: pd.DataFrame
    report: Dict[str, Any] = field(repr=False)

    def _repr_html_(self) -> str:
        return (
            f"<p><b>{self.report.get('file')}</b> [{self.report.get('format')}]: "
            f"{len(self.layers)} layers analysed</p>"
            + self.groups.to_html(index=False)
            + self.layers.to_html(index=False, max_rows=40)
        )

    def __iter__(self):  # layers, groups = convlens.quality(model)
        return iter((self.layers, self.groups))


def quality(model: Any, kernel: str = "3x3", name: Optional[str] = None, entry: Optional[str] = None) -> Quality:
    """Sparsity, variance entropy, orthogonality and norms of every layer of the given kernel
    size (``"3x3"``, ``"all"``, ``"5x5"``, ...) and their per-model aggregates by depth group
    (first layer, then deciles of normalised depth). Same numbers as ``convlens quality``;
    ``entry`` as for :func:`inspect`."""
    js, layers, groups = _convlens.quality(source(model, name), kernel, entry)
    rep = json.loads(js)
    lf, gf = frame(layers), frame(groups)
    lf.attrs["report"] = rep
    gf.attrs["report"] = rep
    return Quality(lf, gf, rep)


@dataclass
class Stem:
    """First-layer perturbation analysis of one model: per stem filter (``filters``), per model
    (``models``), the JSON report and the clean-vs-perturbed activation figure."""

    filters: pd.DataFrame
    models: pd.DataFrame
    report: Dict[str, Any] = field(repr=False)
    figure: Optional[Figure] = field(default=None, repr=False)

    def _repr_html_(self) -> str:
        html = self.models.to_html(index=False)
        if self.figure is not None:
            html += self.figure.svg
        return html


ImagesArg = Union[str, "np.ndarray", Tuple[Any, Mapping[str, Any]]]


def stem(
    model: Any,
    images: Any,
    perturbed: Any = None,
    *,
    key: Optional[str] = None,
    robust: Optional[bool] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    eps: float = 8 / 255,
    steps: int = 0,
    step_size: Optional[float] = None,
    seed: int = 0,
    layer: Optional[str] = None,
    name: Optional[str] = None,
    entry: Optional[str] = None,
) -> Stem:
    """Runs the stem (first conv layer, BatchNorm folded, ReLU) on clean and perturbed images.

    ``images`` is an ``.npz`` path laid out like the zoo's ``adv_examples.npz``, or an
    N×C×H×W array in [0, 1] of clean images; ``perturbed`` is then an array of the same shape
    (or a mapping of keys to such arrays, with ``key`` choosing one). ``mean``/``std`` give the
    input normalisation (default: the ``.npz``'s own, else none); ``steps > 0`` also searches the
    worst-case perturbation of size ``eps`` (projected gradient ascent on the stem alone).
    """
    if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        imgs: Any = images
    else:
        clean = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
        pert: Dict[str, Any] = {}
        if perturbed is not None:
            if isinstance(perturbed, Mapping):
                pert = dict(perturbed)
            else:
                pert = {key or "perturbed": perturbed}
                key = key or "perturbed"
        imgs = (
            describe("clean", clean),
            [(k, describe(k, np.ascontiguousarray(np.asarray(v, dtype=np.float32)))) for k, v in pert.items()],
        )
    js, filters, models, svg = _convlens.stem(
        source(model, name),
        imgs,
        key,
        robust,
        None if mean is None else [float(x) for x in mean],
        None if std is None else [float(x) for x in std],
        eps,
        steps,
        step_size,
        seed,
        layer,
        entry,
    )
    rep = json.loads(js)
    fig = Figure(svg, title="stem activations") if svg else None
    return Stem(frame(filters), frame(models), rep, fig)


def fingerprint(model: Any, name: Optional[str] = None, entry: Optional[str] = None) -> Dict[str, Any]:
    """The probability that a model was adversarially trained, with the evidence: the
    explained-variance spectrum of its l∞-scaled non-sparse 3×3 filters, and for each feature
    where it falls between the robust and normal reference models (the bundled model, trained on
    the authors' published per-model bases; see ``convlens fingerprint``). Raises
    :class:`FileError` for models with too few 3×3 filters."""
    return json.loads(_convlens.fingerprint(source(model, name), entry))
