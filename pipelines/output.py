"""Where a command's results go: with `--json`, stdout carries only JSON (`emit`), and everything else printed
(Python prints of libraries, and C code writing to file descriptor 1) goes to stderr (`json_only_on_stdout`)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator

_results = None  # where JSON results go while library output is sent to stderr (see json_only_on_stdout)


def emit(text: str) -> None:
    """Print a result (JSON) on the real stdout, even while stdout is redirected to stderr."""
    stream = _results or sys.stdout
    with _reader_gone(stream):
        stream.write(text + "\n")
        stream.flush()


def emit_file(path: str | os.PathLike) -> None:
    """Copy a written result file (a submission, answers) to the real stdout, as it is: `export --out -`."""
    stream = _results or sys.stdout
    with _reader_gone(stream), open(path, encoding="utf-8") as handle:
        for block in iter(lambda: handle.read(1 << 20), ""):
            stream.write(block)
        stream.flush()


def discard_stdout(stream: io.TextIOBase | None = None) -> None:
    """Point stdout's file descriptor (or `stream`'s) at /dev/null, so that what is still buffered for a reader
    that went away (`... | head -1`) is dropped when Python flushes it at exit, instead of raising a second
    BrokenPipeError (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        fd = (stream or sys.stdout).fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return  # an in-process caller's StringIO: nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def _reader_gone(stream: io.TextIOBase) -> Iterator[None]:
    """A closed pipe on `stream`: its buffer goes to /dev/null, and BrokenPipeError goes on to the CLI's entry
    point (exit 141, as Unix tools killed by SIGPIPE)."""
    try:
        yield
    except BrokenPipeError:
        discard_stdout(stream)
        raise


@contextlib.contextmanager
def json_only_on_stdout() -> Iterator[None]:
    """Send everything printed to stdout (Python prints of libraries, and C code writing to file descriptor 1)
    to stderr, keeping the real stdout for `emit`: `--json` output must parse as JSON."""
    global _results
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = None
    if fd == 1:  # a real process: move file descriptor 1 too
        saved = os.dup(1)
        os.dup2(2, 1)
        _results = os.fdopen(saved, "w", buffering=1, encoding="utf-8")
    else:  # in-process callers (tests) that replaced sys.stdout
        _results = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        try:
            _results.flush()
        except BrokenPipeError:  # the reader went away: what is left is dropped, the entry point exits 141
            discard_stdout(_results)
            _results.flush()
        if fd == 1:
            os.dup2(_results.fileno(), 1)
            _results.close()
        _results = None
