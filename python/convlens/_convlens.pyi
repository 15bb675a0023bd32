"""Type stubs of the native module (see the Python wrappers for documentation)."""

from os import PathLike
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

_Path = Union[str, PathLike]
#: (names, types, columns) with types "str", "i64", "f64", "bool"
RawTable = Tuple[List[str], List[str], List[List[Any]]]
TensorDesc = Tuple[str, str, Tuple[int, ...], Optional[Tuple[int, ...]], int, Any]
Source = Union[_Path, Tuple[str, List[TensorDesc]]]

__version__: str
PERMUTATIONS: int

def inspect(src: Source, kernel: str, entry: Optional[str] = ...) -> Tuple[str, RawTable]: ...
def quality(src: Source, kernel: str, entry: Optional[str] = ...) -> Tuple[str, RawTable, RawTable]: ...
def find_models(dir: _Path) -> List[str]: ...
def model_name(path: _Path) -> str: ...
def db_build(
    zoo: _Path,
    out: _Path,
    meta: Optional[_Path] = ...,
    name_column: str = ...,
    formats: Sequence[str] = ...,
    kernel: str = ...,
    force: bool = ...,
    files: Sequence[_Path] = ...,
    progress: Optional[Callable[[int, int, str], None]] = ...,
    part: Optional[Tuple[int, int]] = ...,
    entry: Optional[str] = ...,
) -> Tuple[str, List[Tuple[str, str, str, str]]]: ...
def db_merge(inputs: Sequence[_Path], out: _Path, link: bool = ...) -> Tuple[str, List[Tuple[str, str, str, str]]]: ...
def db_models(db: _Path) -> str: ...
def basis(db: _Path, by: Optional[str] = ..., conditions: Sequence[str] = ..., pairs: Optional[_Path] = ..., kernel: str = ...) -> Tuple[str, RawTable]: ...
def shift(
    db: _Path,
    by: str = ...,
    within: Optional[str] = ...,
    conditions: Sequence[str] = ...,
    pairs: Optional[_Path] = ...,
    kernel: str = ...,
    density: str = ...,
    splits: int = ...,
    bootstrap: int = ...,
    seed: int = ...,
    replicate_column: Optional[str] = ...,
    match_columns: Sequence[str] = ...,
    permutations: int = ...,
    exact_permutations: bool = ...,
) -> Tuple[str, RawTable, RawTable]: ...
def kl_matrix(db: _Path, by: str = ..., cell: str = ..., conditions: Sequence[str] = ..., pairs: Optional[_Path] = ..., kernel: str = ..., density: str = ...) -> Tuple[str, RawTable]: ...
def aggregate(db: _Path, by: Optional[str] = ..., conditions: Sequence[str] = ..., pairs: Optional[_Path] = ..., kernel: str = ..., permutations: int = ..., seed: int = ..., within: Optional[str] = ...) -> Tuple[str, RawTable, RawTable]: ...
def report(
    input: _Path,
    out: _Path,
    compare: str = ...,
    meta: Optional[_Path] = ...,
    pairs: Optional[_Path] = ...,
    bootstrap: int = ...,
    images: Optional[_Path] = ...,
    figures: Sequence[str] = ...,
    kernel: str = ...,
) -> Tuple[str, List[Tuple[str, str, str]], List[str]]: ...
def stem(
    src: Source,
    images: Any,
    perturbed: Optional[str] = ...,
    robust: Optional[bool] = ...,
    mean: Optional[Sequence[float]] = ...,
    std: Optional[Sequence[float]] = ...,
    eps: float = ...,
    steps: int = ...,
    step_size: Optional[float] = ...,
    seed: int = ...,
    layer: Optional[str] = ...,
    entry: Optional[str] = ...,
) -> Tuple[str, RawTable, RawTable, Optional[str]]: ...
def filters_figure(src: Source, which: str = ..., kernel: str = ..., entry: Optional[str] = ...) -> str: ...
def fingerprint(src: Source, entry: Optional[str] = ...) -> str: ...
def render_png(svg: str, scale: float = ...) -> bytes: ...
def render_pdf(svg: str) -> bytes: ...
def set_threads(n: int) -> None: ...
def _spin(seconds: float) -> int: ...
