"""A filter database of a model zoo: build it, then compare groups of models."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from . import _convlens
from ._frames import frame, with_report
from .figures import Figure

__all__ = ["Database", "Shift", "Report", "report"]

PathLike = Union[str, "os.PathLike[str]"]


def _where(where: Union[None, str, Sequence[str], Dict[str, Any]]) -> List[str]:
    if where is None:
        return []
    if isinstance(where, str):
        return [where]
    if isinstance(where, dict):
        return [f"{k}={v}" for k, v in where.items()]
    return [str(w) for w in where]


def _opt(p: Optional[PathLike]) -> Optional[str]:
    return None if p is None else os.fspath(p)


class _Progress:
    """A text progress line on stderr (or a tqdm bar when tqdm is installed)."""

    def __init__(self) -> None:
        self.bar = None
        try:
            from tqdm.auto import tqdm  # optional

            self.bar = tqdm(total=0, unit="model")
        except Exception:
            self.bar = None

    def __call__(self, done: int, total: int, name: str) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix_str(name, refresh=False)
            self.bar.refresh()
        else:
            sys.stderr.write(f"\r{done}/{total} models {name[:40]:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")


@dataclass
class Shift:
    """Distribution shift between two groups: one row per (subset, cell) in ``cells``, per
    robust↔normal pair in ``pairs``, and the JSON report (as ``convlens shift`` writes it)."""

    cells: pd.DataFrame
    pairs: pd.DataFrame
    report: Dict[str, Any] = field(repr=False)

    def _repr_html_(self) -> str:
        return self.cells.to_html(index=False)


@dataclass
class Report:
    """An HTML report: ``index`` (path), its figures and the warnings of its analyses."""

    index: str
    figures: List[Figure]
    warnings: List[str]

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{f.title}</li>" for f in self.figures)
        return f"<p>report: <code>{self.index}</code></p><ul>{items}</ul>"


def report(
    input: PathLike,
    out: PathLike,
    *,
    compare: str = "Robust",
    meta: Optional[PathLike] = None,
    pairs: Optional[PathLike] = None,
    bootstrap: int = 200,
    images: Optional[PathLike] = None,
    figures: Optional[Sequence[str]] = None,
    kernel: str = "3x3",
) -> Report:
    """The HTML report of a zoo folder, a database folder or a single checkpoint, written to
    ``out`` (``index.html`` and ``figures/`` as SVG, PNG and PDF) — the same as ``convlens
    report``. ``figures`` picks kinds: filters, rgb, strip, basis, variance, ridge, kl, depth,
    boxes, density, stem."""
    out = os.fspath(out)
    index, figs, warnings = _convlens.report(
        os.fspath(input), out, compare, _opt(meta), _opt(pairs), bootstrap, _opt(images),
        list(figures or []), kernel,
    )
    objs = []
    for fid, title, caption in figs:
        with open(os.path.join(out, "figures", fid + ".svg"), encoding="utf-8") as f:
            objs.append(Figure(f.read(), title=title, caption=caption, id=fid))
    return Report(os.fspath(index), objs, list(warnings))


class Database:
    """A convlens filter database folder (as written by ``convlens db build``).

    >>> db = Database.build("zoo/", meta="zoo/meta.csv", out="zoo.db")
    >>> db.shift(by="Robust").cells
    """

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self._models = json.loads(_convlens.db_models(self.path))  # checks the folder

    @classmethod
    def build(
        cls,
        zoo: PathLike,
        out: PathLike,
        *,
        meta: Optional[PathLike] = None,
        name_column: str = "Name",
        formats: Optional[Sequence[str]] = None,
        kernel: str = "3x3",
        force: bool = False,
        files: Optional[Sequence[PathLike]] = None,
        part: Optional[Tuple[int, int]] = None,
        entry: Optional[str] = None,
        progress: Union[bool, Callable[[int, int, str], None]] = True,
    ) -> "Database":
        """Collects the conv filters of every checkpoint under ``zoo`` (or only ``files``) into
        the database folder ``out`` (created or updated: unchanged files are not read again).
        ``files`` (paths inside ``zoo``) or ``part=(i, n)`` (every n-th model of the name-sorted
        list, from the i-th) build a *partial* database; :meth:`merge` combines partial ones.
        ``entry`` is the checkpoint entry for files whose meta row has no ``Entry`` cell.
        ``progress`` shows a bar (tqdm when installed), ``False`` is silent, a callable gets
        ``(done, total, model)``. Files that fail are listed by :meth:`status`."""
        cb: Optional[Callable[[int, int, str], None]]
        bar = None
        if progress is True:
            bar = _Progress()
            cb = bar
        elif callable(progress):
            cb = progress
        else:
            cb = None
        try:
            summary, status = _convlens.db_build(
                os.fspath(zoo), os.fspath(out), _opt(meta), name_column, list(formats or []),
                kernel, force, [os.fspath(f) for f in (files or [])], cb, part, entry,
            )
        finally:
            if bar is not None:
                bar.close()
        return cls._with_summary(out, summary, status)

    @classmethod
    def _with_summary(cls, out: PathLike, summary: str, status) -> "Database":
        db = cls(out)
        db.last_build = pd.DataFrame(status, columns=["model", "file", "status", "detail"])
        db.last_build.attrs["summary"] = json.loads(summary)
        return db

    @classmethod
    def merge(cls, inputs: Sequence[PathLike], out: PathLike, *, link: bool = False) -> "Database":
        """Merges partial databases (built with the same settings) into the new database
        ``out``: byte for byte the database a single build of all their files gives. A model in
        several inputs is kept once if its contents agree; conflicting inputs raise
        :class:`ArgumentError`. ``link`` hard-links the shards instead of copying them."""
        summary, status = _convlens.db_merge([os.fspath(p) for p in inputs], os.fspath(out), link)
        return cls._with_summary(out, summary, status)

    def status(self) -> pd.DataFrame:
        """Every model of the last build: added, unchanged, failed (with the reason),
        duplicate, meta row without file, ... (``status.csv``)."""
        return pd.read_csv(os.path.join(self.path, "status.csv"), keep_default_na=False)

    def models(self) -> pd.DataFrame:
        """The model table (one row per model, with its meta columns)."""
        return pd.read_csv(os.path.join(self.path, "models.csv"))

    def layers(self) -> pd.DataFrame:
        """The layer table (one row per stored conv layer)."""
        return pd.read_csv(os.path.join(self.path, "layers.csv"))

    def filters(self, model: str, kernel: str = "3x3") -> np.ndarray:
        """The model's stored filters as a read-only memory-mapped ``N×kh×kw`` float32 array."""
        from .errors import ArgumentError

        for m in self._models:
            if m["model"] == model:
                for s in m["shards"]:
                    if s["kernel"] == kernel:
                        return np.load(s["shard"], mmap_mode="r")
                raise ArgumentError(f"{model}: no {kernel} filters in {self.path}")
        raise ArgumentError(f"no model {model!r} in {self.path}")

    def basis(self, by: Optional[str] = None, *, where=None, pairs: Optional[PathLike] = None,
              kernel: str = "3x3") -> pd.DataFrame:
        """PCA basis of the l∞-scaled non-sparse filters (all selected models, per value of
        ``by``, per model): one row per (basis, component), as ``convlens basis``."""
        js, t = _convlens.basis(self.path, by, _where(where), _opt(pairs), kernel)
        return with_report(frame(t), js)

    def shift(self, by: str = "Robust", *, within: Optional[str] = None, where=None,
              pairs: Optional[PathLike] = None, kernel: str = "3x3", density: str = "hist",
              splits: int = 50, bootstrap: int = 200, seed: int = 0x5EED,
              replicate_column: Optional[str] = None,
              match_columns: Optional[Sequence[str]] = None,
              permutations: Optional[int] = None, exact_permutations: bool = True) -> Shift:
        """Variance-weighted symmetric KL between the two groups of ``by``: overall, first
        layer, depth deciles, with the noise floor, a bootstrap interval, a permutation test
        over models (p-values, Benjamini–Hochberg q-values, effect size) and a smoothed KL
        (``convlens shift``). ``permutations`` defaults to the CLI's."""
        perms = _convlens.PERMUTATIONS if permutations is None else permutations
        js, cells, prs = _convlens.shift(
            self.path, by, within, _where(where), _opt(pairs), kernel, density, splits,
            bootstrap, seed, replicate_column, list(match_columns or []), perms,
            exact_permutations,
        )
        rep = json.loads(js)
        c, p = frame(cells), frame(prs)
        c.attrs["report"] = rep
        return Shift(c, p, rep)

    def kl_matrix(self, by: str = "model", *, cell: str = "overall", where=None,
                  pairs: Optional[PathLike] = None, kernel: str = "3x3",
                  density: str = "hist") -> pd.DataFrame:
        """Symmetric KL between every pair of groups (long form: ``a``, ``b``, ``kl``, as
        ``convlens kl-matrix``); ``.pivot(index="a", columns="b", values="kl")`` is the matrix."""
        js, t = _convlens.kl_matrix(self.path, by, cell, _where(where), _opt(pairs), kernel, density)
        return with_report(frame(t), js)

    def aggregate(self, by: Optional[str] = None, *, where=None,
                  pairs: Optional[PathLike] = None, kernel: str = "3x3",
                  permutations: Optional[int] = None, seed: int = 0x5EED,
                  within: Optional[str] = None) -> pd.DataFrame:
        """Per-model sparsity, variance entropy and orthogonality by depth group (the data of
        the paper's box plots), as ``convlens aggregate``. With two groups in ``by``,
        ``df.attrs["tests"]`` holds the per-metric, per-depth-group permutation tests (p-values,
        Benjamini–Hochberg q-values; ``aggregate_tests.csv`` of the CLI), per ``within`` subset."""
        perms = _convlens.PERMUTATIONS if permutations is None else permutations
        js, t, tests = _convlens.aggregate(
            self.path, by, _where(where), _opt(pairs), kernel, perms, seed, within,
        )
        df = with_report(frame(t), js)
        df.attrs["tests"] = frame(tests)
        return df

    def report(self, out: PathLike, **kwargs: Any) -> Report:
        """The HTML report of this database (see :func:`convlens.report`)."""
        return report(self.path, out, **kwargs)

    def __repr__(self) -> str:
        n = sum(s["filters"] for m in self._models for s in m["shards"])
        return f"<convlens.Database {self.path!r}: {len(self._models)} models, {n} filters>"
