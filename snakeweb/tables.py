"""Reading the CSV files users hand in: one place that turns every way a CSV can be unreadable into a sentence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from snakeweb.errors import SnakewebError

UNREADABLE = (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError)


def read_user_csv(path: str | Path, what: str, error: type[SnakewebError] = SnakewebError, **kwargs) -> pd.DataFrame:
    """`pd.read_csv` with a sentence naming the file and what it should be, instead of a traceback."""
    try:
        return pd.read_csv(path, **kwargs)
    except UNREADABLE as exc:
        raise error(f"Cannot read the {what} {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.") from exc
