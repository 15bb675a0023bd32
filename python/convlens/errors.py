"""The exceptions convlens raises.

Every error is a :class:`convlens.Error`. A file that cannot be used raises
:class:`FileError`, which carries the file's ``path`` and the ``reason``; an unusable argument
raises :class:`ArgumentError` (also a :class:`ValueError`).
"""

from __future__ import annotations

__all__ = ["Error", "FileError", "ArgumentError"]


class Error(Exception):
    """Base class of every convlens error."""


class FileError(Error):
    """A file (checkpoint, database, meta table, images) cannot be used.

    Attributes:
        path: the file, as given.
        reason: what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable, e.g. across multiprocessing
        return (type(self), (self.path, self.reason))


class ArgumentError(Error, ValueError):
    """An argument is unusable (unknown column, bad kernel size, unsupported object, ...)."""
