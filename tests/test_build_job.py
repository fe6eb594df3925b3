"""BuildJob on small real child processes: output gathering, exit codes, cancel. No speed assertions: every wait
has a generous upper bound that only stops a hung child from hanging the suite."""

from __future__ import annotations

import sys
import time

from snakeweb.build_job import BuildJob, build_command, run_streaming

BOUND_S = 300.0  # upper bound on any wait, far above what these tiny children need even on a busy machine

PROGRESS = r"""
import sys
print("starting", flush=True)
for i in range(1, 4):
    sys.stderr.write(f"\rembed: {i}/3")  # a progress bar's carriage-return updates, on stderr
    sys.stderr.flush()
sys.stderr.write("\n")
print("\n\nbuild: done · é", flush=True)  # blank lines are dropped; non-ASCII survives
sys.exit(3)
"""


def test_job_gathers_stdout_stderr_and_progress_updates_as_lines_and_the_exit_code():
    job = BuildJob([sys.executable, "-c", PROGRESS])
    assert job.wait(BOUND_S) == 3
    assert job.done and not job.running and job.returncode == 3 and not job.cancelled
    assert job.lines == ["starting", "embed: 1/3", "embed: 2/3", "embed: 3/3", "build: done · é"]
    assert job.tail(2) == ["embed: 3/3", "build: done · é"] and job.tail(0) == []


def test_lines_is_a_copy_and_a_successful_job_exits_zero():
    job = BuildJob([sys.executable, "-c", "print('a'); print('b')"])
    assert job.wait(BOUND_S) == 0
    lines = job.lines
    lines.append("mine")
    assert job.lines == ["a", "b"]


def test_only_the_last_max_lines_are_kept():
    job = BuildJob([sys.executable, "-c", "for i in range(50): print(i)"], max_lines=10)
    assert job.wait(BOUND_S) == 0
    assert job.lines == [str(i) for i in range(40, 50)]


def test_job_runs_in_the_background_and_cancel_stops_it():
    script = "import time; print('sleeping', flush=True); time.sleep(3600)"
    job = BuildJob([sys.executable, "-c", script])
    assert job.running and job.returncode is None  # the constructor returned while the child sleeps
    deadline = time.monotonic() + BOUND_S
    while job.lines != ["sleeping"] and time.monotonic() < deadline:  # its output arrives while it runs
        time.sleep(0.05)
    assert job.lines == ["sleeping"] and job.running
    assert job.wait(0.01) is None  # a short wait on a running job says "not yet" instead of raising
    job.cancel()
    assert job.wait(BOUND_S) is not None
    assert job.done and job.cancelled and job.returncode != 0


def test_cancel_kills_a_child_that_ignores_sigterm():
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
              "time.sleep(3600)")
    job = BuildJob([sys.executable, "-c", script])
    deadline = time.monotonic() + BOUND_S
    while "ready" not in job.lines and time.monotonic() < deadline:  # SIGTERM is ignored from here on
        time.sleep(0.05)
    job.cancel(grace=0.5)
    assert job.wait(BOUND_S) is not None and job.cancelled and job.returncode != 0


def test_cancel_after_the_end_changes_nothing():
    job = BuildJob([sys.executable, "-c", "print('x')"])
    assert job.wait(BOUND_S) == 0
    job.cancel()
    assert job.returncode == 0 and not job.cancelled


def test_run_streaming_still_calls_back_for_every_line():
    seen: list[str] = []
    assert run_streaming([sys.executable, "-c", PROGRESS], seen.append) == 3
    assert seen == ["starting", "embed: 1/3", "embed: 2/3", "embed: 3/3", "build: done · é"]


def test_build_command_is_the_pipelines_build_of_this_interpreter():
    command = build_command("store", "photos", "species.csv", "dinov2-small-offline", None, "linear")
    assert command[:4] == [sys.executable, "-m", "pipelines", "build"]
    assert command[4:] == ["--store", "store", "--model", "dinov2-small-offline", "--head", "linear", "--images", "photos",
                           "--species", "species.csv"]
    # the Build page's "remove photos gone from the folder": the command line's --remove-gone, for a folder only
    assert build_command("store", "photos", remove_gone=True)[-1] == "--remove-gone"
    assert "--remove-gone" not in build_command("store", None, remove_gone=False, metadata=["m.csv"], image_root="root")
