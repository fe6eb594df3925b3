"""Progress bars of the stages and the quick commands (tqdm only: no model library)."""

from __future__ import annotations

from tqdm.auto import tqdm as _tqdm


def tqdm(*args, **kwargs):
    """Progress with counts and rate, redrawn at most twice a second (logs stay readable)."""
    return _tqdm(*args, mininterval=0.5, dynamic_ncols=True, **kwargs)
