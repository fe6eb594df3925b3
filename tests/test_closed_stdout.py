"""stdout's reader going away (`export --answers --out - | head -1`) ends a command as Unix tools end: no message,
exit 141 (128 + SIGPIPE), and no second error when Python flushes stdout at exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines.cli import SIGPIPE_EXIT
from tests.conftest import REPO, build_photo_store


@pytest.fixture(scope="module")
def store_root(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    return build_photo_store(tmp_path_factory.mktemp("closed-stdout") / "store", tiny_model_dir, photo_folder, species_csv,
                             "--skip-project")


def run_into_closed_pipe(*arguments: str) -> subprocess.CompletedProcess:
    """`python -m pipelines ARGUMENTS` writing into a pipe whose reader closed before the command wrote anything."""
    reader, writer = os.pipe()
    os.close(reader)  # every write to the pipe fails with EPIPE, whatever its size
    try:
        return subprocess.run([sys.executable, "-m", "pipelines", *arguments], cwd=REPO, stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(writer)


@pytest.mark.parametrize("command", [["export", "--answers", "--out", "-"], ["export", "--out", "-"], ["check"],
                                     ["identify", "--each", "--json"], ["identify", "--each"]])
def test_a_closed_stdout_exits_141_with_no_message(store_root, photo_folder, command):
    photos = [str(p) for p in sorted(photo_folder.glob("*/0*.jpg"))] if command[0] == "identify" else []
    done = run_into_closed_pipe(command[0], "--store", str(store_root), *command[1:], *photos)
    assert done.returncode == SIGPIPE_EXIT == 141, done.stderr
    assert "Broken pipe" not in done.stderr and "BrokenPipe" not in done.stderr and "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr and "error:" not in done.stderr


def test_a_reader_that_reads_one_line_then_closes(store_root):
    """`export --answers --out - | head -1`, with more output than the pipe holds."""
    exporter = subprocess.Popen([sys.executable, "-m", "pipelines", "export", "--store", str(store_root), "--answers",
                                 "--out", "-"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = exporter.stdout.readline()
    exporter.stdout.close()
    _, err = exporter.communicate(timeout=600)
    assert first.startswith(b"{")
    assert exporter.returncode in (0, SIGPIPE_EXIT) and b"Broken pipe" not in err and b"Traceback" not in err
