"""Progress bars of the stages and the quick commands (tqdm only: no model library)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm as _tqdm

# seconds between redraws: a terminal redraws in place, but a log or the Build page's pipe keeps every redraw as a
# line (a build's training bar wrote ~460 of them at 0.5 s)
TERMINAL_INTERVAL, PIPE_INTERVAL = 0.5, 5.0


class _Progress(_tqdm):
    """tqdm whose set_postfix waits for the next timed redraw into a pipe (tqdm's own redraws at once, every call)."""

    def set_postfix(self, ordered_dict=None, refresh: bool | None = None, **kwargs) -> None:
        super().set_postfix(ordered_dict, refresh=self.mininterval < PIPE_INTERVAL if refresh is None else refresh, **kwargs)


def tqdm(*args, **kwargs) -> _tqdm:
    """Progress with counts and rate, redrawn at most twice a second on a terminal and every 5 s into a pipe or
    file (logs stay readable; the last state is always written)."""
    stream = kwargs.get("file") or sys.stderr
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    return _Progress(*args, mininterval=TERMINAL_INTERVAL if interactive else PIPE_INTERVAL, dynamic_ncols=True, **kwargs)
