"""Run a store build as a child process and stream its progress lines: the dashboard's Build page uses it
so a long build neither blocks nor dies with a browser tab."""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
_LINE_BREAK = re.compile(r"[\r\n]")


def build_command(store: str | Path, images: str | Path | None = None, species: str | Path | list | None = None, model: str = "auto",
                  features: str | None = None, head: str = "linear+knn", country_table: str | Path | None = None,
                  metadata: list[str] | None = None, image_root: str | Path | None = None,
                  taxonomy: str | Path | None = None, remove_gone: bool = False) -> list[str]:
    """The `python -m pipelines build` command for an image folder, or for SnakeCLEF metadata + image root;
    `taxonomy` (a taxonomy CSV such as serpentes.csv) gives every class its family; `remove_gone` (an image folder
    only: build refuses it with metadata) takes photos gone from the folder out of the store."""
    command = [sys.executable, "-m", "pipelines", "build", "--store", str(store), "--model", model, "--head", head]
    if features:  # else the model's own default feature kind
        command += ["--features", features]
    if metadata:
        command += ["--metadata", *map(str, metadata), "--image-root", str(image_root)]
    else:
        command += ["--images", str(images)]
        if remove_gone:
            command += ["--remove-gone"]
    if species:  # one table, or several (e.g. class_list.csv and venomous_status_list.csv)
        command += ["--species", *map(str, species if isinstance(species, list | tuple) else [species])]
    if country_table:
        command += ["--country-table", str(country_table)]
    if taxonomy:
        command += ["--taxonomy", str(taxonomy)]
    return command


def _start(command: list[str], cwd: str | Path, env: Mapping[str, str] | None) -> subprocess.Popen[bytes]:
    """The child with stderr merged into stdout, so warnings and tracebacks land in the same log as progress."""
    return subprocess.Popen(command, cwd=cwd, env=None if env is None else dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def output_lines(stream: IO[bytes]) -> Iterator[str]:
    """The non-blank lines of a child's byte output until EOF; a progress bar's carriage-return updates count as lines.

    os.read returns whatever the pipe holds instead of waiting for a full buffer (as file.read(n) does), so each
    progress update is seen as soon as the child writes it; the incremental decoder keeps a UTF-8 character that is
    split across two reads intact."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = stream.fileno()
    buffer = ""
    while chunk := os.read(fd, 65536):
        buffer += decoder.decode(chunk)
        *lines, buffer = _LINE_BREAK.split(buffer)
        yield from (line for line in lines if line.strip())
    buffer += decoder.decode(b"", final=True)
    if buffer.strip():
        yield buffer


class BuildJob:
    """A command running as a child process in the background, its output gathered line by line.

    A daemon thread reads the output, so a caller (a Streamlit script run) can start the job, return at once,
    and look at `lines` / `done` / `returncode` on later runs. Nothing here blocks except `wait`."""

    def __init__(self, command: list[str], cwd: str | Path = REPO, env: Mapping[str, str] | None = None,
                 max_lines: int | None = 10_000) -> None:
        """Start `command` in `cwd` (the repository, so `python -m pipelines` resolves) with `env` (None: this
        process's environment). Only the last `max_lines` lines are kept (None: all): a progress bar writes one
        line per update and a long build must not grow memory without bound; the last lines are the ones that
        say why a build failed."""
        self.command = list(command)
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._lock = threading.Lock()  # the reader thread appends while script runs copy
        self._finished = threading.Event()
        self._cancelled = False
        self._process = _start(self.command, cwd, env)
        self._reader = threading.Thread(target=self._read, name=f"build-job-{self._process.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        try:
            with self._process.stdout:
                for line in output_lines(self._process.stdout):
                    with self._lock:
                        self._lines.append(line)
        finally:
            # "done" only once the child has exited *and* every line it wrote is in `lines`, so a caller that
            # sees done never misses the final lines (e.g. "build: done" or the traceback)
            self._process.wait()
            self._finished.set()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def lines(self) -> list[str]:
        """A copy of the output lines so far (the caller may keep it while the reader goes on appending)."""
        with self._lock:
            return list(self._lines)

    def tail(self, count: int) -> list[str]:
        """The last `count` output lines, without copying the whole log."""
        with self._lock:
            return list(self._lines)[-count:] if count > 0 else []

    @property
    def done(self) -> bool:
        """The child has exited and all its output has been read."""
        return self._finished.is_set()

    @property
    def running(self) -> bool:
        return not self._finished.is_set()

    @property
    def returncode(self) -> int | None:
        """The child's exit code once done (negative: killed by that signal, e.g. after `cancel`); None while running."""
        return self._process.returncode if self._finished.is_set() else None

    @property
    def cancelled(self) -> bool:
        """`cancel` was called before the job finished by itself."""
        return self._cancelled

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds (None: for ever) for the job to finish; its exit code, or None if still running."""
        self._finished.wait(timeout)
        return self.returncode

    def cancel(self, grace: float = 5.0) -> None:
        """Stop the child: SIGTERM, then SIGKILL if it has not exited within `grace` seconds. A finished job is left alone."""
        if self._finished.is_set():
            return
        self._cancelled = True
        try:
            self._process.terminate()
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:  # it ignores or is stuck handling SIGTERM
                self._process.kill()
        except ProcessLookupError:  # exited between the check and the signal
            pass


def run_streaming(command: list[str], on_line: Callable[[str], None]) -> int:
    """Run `command`, calling `on_line` for every output line (progress bars' carriage-return updates
    count as lines) in the calling thread; returns the exit code. Blocks until the child exits: the dashboard
    uses `BuildJob` instead."""
    process = _start(command, REPO, None)
    assert process.stdout is not None
    with process.stdout:
        for line in output_lines(process.stdout):
            on_line(line)
    return process.wait()
