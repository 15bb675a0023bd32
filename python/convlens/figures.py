"""Figures as objects that notebooks show inline and that save as SVG, PNG or PDF.

No matplotlib: the figures are drawn by the convlens engine as standalone SVG (with an
embedded font) and rasterised or converted to PDF by it.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from . import _convlens
from ._inputs import source
from .errors import ArgumentError

__all__ = ["Figure", "filters", "rgb_filters"]

#: pixels per point for 300 dpi
PNG_300_DPI = 300.0 / 72.0


class Figure:
    """A figure: its SVG text, shown inline by Jupyter (``_repr_svg_`` / ``_repr_png_``)."""

    def __init__(self, svg: str, title: str = "", caption: str = "", id: str = "") -> None:
        self.svg = svg
        self.title = title
        self.caption = caption
        self.id = id

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_png_(self) -> bytes:
        return self.to_png(scale=2.0)

    def to_png(self, scale: float = PNG_300_DPI) -> bytes:
        """PNG bytes, ``scale`` pixels per point (default 300 dpi)."""
        return _convlens.render_png(self.svg, scale)

    def to_pdf(self) -> bytes:
        """PDF bytes (vector)."""
        return _convlens.render_pdf(self.svg)

    def save(self, path: Union[str, os.PathLike], format: Optional[str] = None) -> str:
        """Writes the figure; the format comes from ``format`` or the file's suffix
        (``.svg``, ``.png``, ``.pdf``). Returns the path."""
        path = os.fspath(path)
        fmt = (format or os.path.splitext(path)[1].lstrip(".")).lower()
        if fmt == "svg":
            data = self.svg.encode("utf-8")
        elif fmt == "png":
            data = self.to_png()
        elif fmt == "pdf":
            data = self.to_pdf()
        else:
            raise ArgumentError(f"{path}: unknown figure format {fmt!r} (svg, png or pdf)")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def __repr__(self) -> str:
        name = self.id or self.title or "figure"
        return f"<convlens.Figure {name!r}: {len(self.svg)} bytes of SVG>"


def filters(model: Any, layer: str = "first", kernel: str = "3x3", name: Optional[str] = None) -> Figure:
    """The filters of one conv layer (``first``, ``last`` or a layer name) as a grid: rows are
    input channels, columns output channels (first 8 × 16), colours scaled to ±max|w|."""
    svg = _convlens.filters_figure(source(model, name), layer, kernel)
    return Figure(svg, title=f"{layer} layer filters")


def rgb_filters(model: Any, kernel: str = "3x3", name: Optional[str] = None) -> Figure:
    """The stem (first conv layer with 3 input channels) as colour patches."""
    svg = _convlens.filters_figure(source(model, name), "rgb", kernel)
    return Figure(svg, title="RGB stem filters")
