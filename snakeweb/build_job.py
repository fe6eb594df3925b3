"""Run a store build as a child process and stream its progress lines: the dashboard's Build page uses it
so a long build neither blocks nor dies with a browser tab."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_command(store: str | Path, images: str | Path | None = None, species: str | Path | None = None, model: str = "auto",
                  features: str | None = None, head: str = "linear+knn", country_table: str | Path | None = None,
                  metadata: list[str] | None = None, image_root: str | Path | None = None) -> list[str]:
    """The `python -m pipelines build` command for an image folder, or for SnakeCLEF metadata + image root."""
    command = [sys.executable, "-m", "pipelines", "build", "--store", str(store), "--model", model, "--head", head]
    if features:  # else the model's own default feature kind
        command += ["--features", features]
    if metadata:
        command += ["--metadata", *map(str, metadata), "--image-root", str(image_root)]
    else:
        command += ["--images", str(images)]
    if species:
        command += ["--species", str(species)]
    if country_table:
        command += ["--country-table", str(country_table)]
    return command


def run_streaming(command: list[str], on_line: Callable[[str], None]) -> int:
    """Run `command`, calling `on_line` for every output line (progress bars' carriage-return updates
    count as lines); returns the exit code."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert process.stdout is not None
    buffer = ""
    while chunk := process.stdout.read(256):
        buffer += chunk
        *lines, buffer = re.split(r"[\r\n]", buffer)
        for line in lines:
            if line.strip():
                on_line(line)
    if buffer.strip():
        on_line(buffer)
    return process.wait()
