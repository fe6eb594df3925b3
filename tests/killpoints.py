"""Run the real `python -m pipelines` in a subprocess that SIGKILLs itself at a fixed point of the code.

A kill after a sleep lands at a different place on a faster machine (on CI's, every image was already embedded
1.5 s after embedding began); a kill right before or after the Nth call of a named function lands at the same
place on any machine. The function is wrapped in the child process only: the product runs unchanged otherwise.
"""

import signal
import subprocess
import sys
from pathlib import Path

_KILLER = """
import importlib, os, runpy, signal, sys

target, when, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
module_name, _, attribute = target.partition(":")
*owner_path, name = attribute.split(".")
owner = importlib.import_module(module_name)
for part in owner_path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), []

def killed_at_the_nth_call(*args, **kwargs):
    calls.append(1)
    if when == "before" and len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if when == "after" and len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)  # what the call wrote (a committed transaction, a file) is kept
    return result

setattr(owner, name, killed_at_the_nth_call)
sys.argv = ["pipelines", *sys.argv[4:]]
runpy.run_module("pipelines", run_name="__main__")
"""


def run_killed(target: str, when: str, nth: int, arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m pipelines *arguments` and SIGKILL it `when` ("before" or "after") the `nth` call of
    `target` ("module:function" or "module:Class.method"); returns the finished process. Raises AssertionError
    when the process was not killed (the point was never reached), with its output."""
    assert when in ("before", "after")
    finished = subprocess.run([sys.executable, "-c", _KILLER, target, when, str(nth), *arguments], cwd=cwd,
                              capture_output=True, text=True)
    assert finished.returncode == -signal.SIGKILL, (
        f"the run was not killed {when} call {nth} of {target} (exit {finished.returncode}):\n"
        + finished.stdout[-2000:] + finished.stderr[-2000:])
    return finished
