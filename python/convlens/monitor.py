"""Filter quality of a live model, measured during training."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import pandas as pd

from .analysis import quality

__all__ = ["Monitor"]


class Monitor:
    """Measures a model's filter quality each time it is called and keeps the history.

    >>> mon = convlens.Monitor(model)
    >>> for epoch in range(epochs):
    ...     train_one_epoch(model)
    ...     mon.step(epoch=epoch, acc=val_acc)      # appends to mon.layers / mon.groups
    >>> mon.groups.pivot_table(index="epoch", columns="depth_group", values="variance_entropy")

    Each step reads the weights in place (no copy for CPU tensors; GPU tensors are copied to
    the host once) and computes the same metrics as :func:`convlens.quality`. Columns of
    ``layers`` and ``groups`` are those of ``quality`` plus ``step``, ``seconds`` (time taken by
    the measurement) and any keyword given to :meth:`step` (e.g. ``epoch``, ``acc``).
    """

    def __init__(self, model: Any = None, kernel: str = "3x3", name: Optional[str] = None) -> None:
        self.model = model
        self.kernel = kernel
        self.name = name
        self._layers: List[pd.DataFrame] = []
        self._groups: List[pd.DataFrame] = []
        self._step = 0

    def step(self, model: Any = None, **extra: Any) -> pd.DataFrame:
        """Measures ``model`` (default: the monitor's), appends the rows, and returns this
        step's per-depth-group rows."""
        m = model if model is not None else self.model
        if m is None:
            from .errors import ArgumentError

            raise ArgumentError("Monitor.step: no model given")
        t0 = time.perf_counter()
        q = quality(m, kernel=self.kernel, name=self.name or "model")
        dt = time.perf_counter() - t0
        cols: Dict[str, Any] = {"step": self._step, "seconds": dt, **extra}
        frames = []
        for df in (q.layers, q.groups):
            df = df.drop(columns=["file", "format"])
            for i, (k, v) in enumerate(cols.items()):
                df.insert(i, k, v)
            df.attrs.clear()
            frames.append(df)
        self._layers.append(frames[0])
        self._groups.append(frames[1])
        self._step += 1
        return frames[1]

    __call__ = step

    @property
    def layers(self) -> pd.DataFrame:
        """Every layer at every step."""
        return pd.concat(self._layers, ignore_index=True) if self._layers else pd.DataFrame()

    @property
    def groups(self) -> pd.DataFrame:
        """Every depth group at every step."""
        return pd.concat(self._groups, ignore_index=True) if self._groups else pd.DataFrame()
