"""One building command at a time per store: a second is refused at once, naming the first; a killed holder
leaves no lock behind; a refused first build leaves no folder. Real subprocesses and real OS file locks."""

import os
import signal
import subprocess
import sys

from snakeweb.store import Store
from snakeweb.writer_lock import LOCK_NAME, one_writer
from tests.conftest import REPO

HOLD_THEN_DIE = """
import os, signal, sys
from snakeweb.writer_lock import one_writer
with one_writer(sys.argv[1], "build"):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def pipelines(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", *arguments], cwd=REPO, capture_output=True, text=True)


def test_a_second_build_into_a_store_being_built_is_refused_naming_the_first(tmp_path, photo_folder, tiny_model_dir):
    store = tmp_path / "store"
    build = ["build", "--store", str(store), "--images", str(photo_folder), "--model", str(tiny_model_dir), "--skip-project"]
    with one_writer(store, "build"):  # this process is the first build
        for command in (build, ["ingest", "--store", str(store), "--images", str(photo_folder)], ["train", "--store", str(store)]):
            refused = pipelines(*command)
            assert refused.returncode == 2, refused.stderr[-2000:]
            assert f"is being built by `build` (process {os.getpid()}" in refused.stderr and "Traceback" not in refused.stderr
            assert f"run `{command[0]}` again" in refused.stderr
        assert not Store(store).exists()  # the refused ones wrote nothing
    done = pipelines(*build)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Store(store).exists() and not (store / ".writer.json").exists()


def test_a_killed_holder_leaves_no_lock_and_reading_never_waits(tmp_path, photo_folder, tiny_model_dir):
    store = tmp_path / "store"
    killed = subprocess.run([sys.executable, "-c", HOLD_THEN_DIE, str(store)], cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and (store / LOCK_NAME).exists()  # died holding it
    built = pipelines("build", "--store", str(store), "--images", str(photo_folder), "--model", str(tiny_model_dir), "--skip-project")
    assert built.returncode == 0, built.stderr[-2000:]
    with one_writer(store, "build"):
        checked = pipelines("check", "--store", str(store))  # reading is not a building command
        assert checked.returncode == 0 and "is being built" not in checked.stderr, checked.stdout + checked.stderr


def test_a_refused_first_build_leaves_no_folder(tmp_path):
    store = tmp_path / "new-store"
    refused = pipelines("ingest", "--store", str(store), "--images", str(tmp_path / "no-such-folder"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert not store.exists()
