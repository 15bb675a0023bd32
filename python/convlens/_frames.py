"""Typed tables of the native module as pandas DataFrames."""

from __future__ import annotations

import json
from typing import Any, List, Sequence, Tuple

import numpy as np
import pandas as pd

RawTable = Tuple[Sequence[str], Sequence[str], Sequence[List[Any]]]


def frame(raw: RawTable) -> pd.DataFrame:
    """A DataFrame with the column types a user gets from ``pd.read_csv`` of the CLI's CSV.

    Integer columns with missing values become float64 with NaN (as in ``read_csv`` and
    ``read_parquet``); float columns hold NaN for missing or non-finite values; strings keep
    ``None`` for missing values.
    """
    names, types, cols = raw
    data = {}
    for name, ty, col in zip(names, types, cols):
        has_none = any(v is None for v in col)
        if ty == "f64":
            data[name] = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
        elif ty == "i64":
            if has_none:
                data[name] = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
            else:
                data[name] = np.array(col, dtype=np.int64)
        elif ty == "bool":
            data[name] = np.array(col, dtype=object if has_none else bool)
        else:
            data[name] = pd.Series(col, dtype=object)
    df = pd.DataFrame(data, columns=list(names))
    if len(df.index) == 0:
        df = pd.DataFrame({n: pd.Series([], dtype=object) for n in names}, columns=list(names))
    return df


def with_report(df: pd.DataFrame, report_json: str) -> pd.DataFrame:
    """Attaches the full JSON report (as the CLI's ``--format json`` writes it) as ``df.attrs``."""
    df.attrs["report"] = json.loads(report_json)
    return df
