"""Where the dashboard finds its store: `SNAKEWEB_STORE`, else `./store` beside the app."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = Path(__file__).resolve().parents[1] / "store"


def store_path() -> Path:
    return Path(os.environ.get("SNAKEWEB_STORE") or DEFAULT_STORE)
