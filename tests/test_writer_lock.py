"""One building command at a time per store: a second is refused at once, naming the first; a killed holder
leaves no lock behind; a refused first build leaves no folder. Real subprocesses and real OS file locks."""

import os
import signal
import subprocess
import sys
import time

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


def test_the_embed_writer_lets_readers_in_while_the_next_batch_is_slow(tmp_path, monkeypatch):
    # the writer kept its connection while it waited for the next batch, so during a slow batch (a large model on
    # the CPU) every reader waited its 5 s and gave up with "the store is being rebuilt or written"
    import numpy as np

    from snakeweb.embed import EmbeddedBatch
    from snakeweb.embed_stage import StoreWriter
    from snakeweb.images import DecodedImage

    store = Store(tmp_path / "store").create()
    with store.transaction() as con:
        con.execute("INSERT INTO images (image_id, observation_id, path, split, status) VALUES (0, 'o', '/p.jpg', 'train', 'pending')")
    monkeypatch.setattr(StoreWriter, "HOLD_S", 0.2)
    batch = EmbeddedBatch(keys=[0], decoded=[DecodedImage(None, "0" * 64, 1, 64, 64)], errors=[None],
                          vectors=[np.ones(8, np.float32)], decoders=["pillow"]).rows()
    with StoreWriter(store) as writer:
        writer.put(batch)
        # the next batch never comes while this reads: each read gets in, before the write or once the writer lets go
        # (HOLD_S after it), until the row is there
        for _ in range(300):
            with store.connect(read_only=True, wait_s=30) as con:
                if con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 1:
                    break
            time.sleep(0.1)  # a loaded machine may not have run the writer's thread yet
        else:
            raise AssertionError("the written row never showed")


def test_readers_get_in_while_the_embed_writer_takes_batch_after_batch(tmp_path, monkeypatch):
    # with batches a tenth of a second apart, the writer reopened the moment it had let go, and readers (retrying
    # every 0.2 s at most) kept missing the gap until their 5 s ran out
    import threading

    import numpy as np

    from snakeweb.embed import EmbeddedBatch
    from snakeweb.embed_stage import StoreWriter
    from snakeweb.errors import SnakewebError
    from snakeweb.images import DecodedImage

    store = Store(tmp_path / "store").create()
    with store.transaction() as con:
        con.execute("INSERT INTO images (image_id, observation_id, path, split, status) "
                    "SELECT i, 'o' || i, '/p' || i || '.jpg', 'train', 'pending' FROM range(400) t(i)")
    monkeypatch.setattr(StoreWriter, "HOLD_S", 0.3)
    failures, reads, done = [], [], threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                with store.connect(read_only=True, wait_s=5) as con:
                    reads.append(con.execute("SELECT count(*) FROM embeddings").fetchone()[0])
            except SnakewebError as exc:
                failures.append(str(exc))
            time.sleep(0.05)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with StoreWriter(store) as writer:
            for i in range(400):
                writer.put(EmbeddedBatch(keys=[i], decoded=[DecodedImage(None, "0" * 64, 1, 64, 64)], errors=[None],
                                         vectors=[np.ones(8, np.float32)], decoders=["pillow"]).rows())
                time.sleep(0.01)
    finally:
        done.set()
        reader.join()
    assert not failures, failures[0]
    assert len(reads) >= 3 and store.query("SELECT count(*) AS n FROM embeddings")["n"][0] == 400
