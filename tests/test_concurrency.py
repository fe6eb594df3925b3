"""Many reviewers at once: threads through the Review page's library calls, and separate processes."""

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from pipelines.cli import main
from snakeweb.review import add_review, reviews
from snakeweb.store import Store
from tests.conftest import REPO


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    root = tmp_path_factory.mktemp("concurrency") / "store"
    assert main(["build", "--store", str(root), "--images", str(photo_folder), "--species", str(species_csv),
                 "--model", str(tiny_model_dir), "--skip-project"]) == 0
    return Store(root)


def observations(store: Store) -> list[str]:
    return store.query("SELECT observation_id FROM observations WHERE class_id IS NOT NULL ORDER BY 1")["observation_id"].tolist()


# reviews per writer: each review opens the store, writes and commits (~50 ms here), so 60 a writer keeps all
# eight threads (or four processes) contending for the file for several seconds
REVIEWS_EACH = 60


def test_eight_reviewer_threads_store_every_review(store):
    targets = observations(store)
    before = len(reviews(store))

    def reviewer(n: int) -> None:
        for i in range(REVIEWS_EACH):
            add_review(store, targets[(n * REVIEWS_EACH + i) % len(targets)], f"reviewer-{n}", 1130 if i % 2 else 1740, f"#{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(reviewer, range(8)))
    stored = reviews(store).iloc[before:]
    assert len(stored) == 8 * REVIEWS_EACH
    assert stored.groupby("reviewer").size().to_dict() == {f"reviewer-{n}": REVIEWS_EACH for n in range(8)}
    assert stored["review_id"].is_unique


WRITER = """
import sys
from snakeweb.review import add_review
from snakeweb.store import Store
store, name, targets, each = Store(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
for i in range(each):
    add_review(store, targets[i % len(targets)], name, 7, "from a process")
"""


def test_four_reviewer_processes_store_every_review(store):
    targets = ",".join(observations(store)[:10])
    before = len(reviews(store))
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), f"process-{n}", targets, str(REVIEWS_EACH)], cwd=REPO,
                                  stderr=subprocess.PIPE, text=True) for n in range(4)]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert all(p.returncode == 0 for p in processes), errors
    stored = reviews(store).iloc[before:]
    assert len(stored) == 4 * REVIEWS_EACH
    assert stored.groupby("reviewer").size().to_dict() == {f"process-{n}": REVIEWS_EACH for n in range(4)}


@pytest.mark.parametrize("held_read_only", [True, False])
def test_one_process_waits_for_its_own_other_connection_instead_of_failing(store, monkeypatch, held_read_only):
    """Within one process DuckDB refuses a read-only and a read-write connection to a file at once; the dashboard
    meets that when one session writes (a review, the reviews table on a first visit) while another reads. The
    second connection waits for the first to close instead of raising (CI once showed the Review page a traceback)."""
    refused, real_connect = threading.Event(), duckdb.connect

    def connect_noting_refusals(*args, **kwargs):
        try:
            return real_connect(*args, **kwargs)
        except duckdb.ConnectionException:
            refused.set()
            raise

    monkeypatch.setattr(duckdb, "connect", connect_noting_refusals)
    outcome: list = []

    def second_connection():
        try:
            with store.connect(read_only=not held_read_only, wait_s=120) as con:
                outcome.append(con.execute("SELECT count(*) FROM species").fetchone()[0])
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            outcome.append(exc)

    with store.connect(read_only=held_read_only):
        thread = threading.Thread(target=second_connection)
        thread.start()
        assert refused.wait(timeout=120), "the second connection should have been refused while the first is open"
        assert not outcome, f"the second connection should still be waiting, not {outcome}"
    thread.join(timeout=120)
    assert outcome == [3]


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("BEGIN TRANSACTION")
con.execute("UPDATE images SET status = status")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def test_reads_during_a_rebuild_wait_or_say_so_and_loaded_models_keep_identifying(store, photo_folder):
    from snakeweb.identify import Identifier
    from snakeweb.store import StoreBusyError

    identifier = Identifier(store)  # loaded before the rebuild starts, as the dashboard's cached one is
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.db_path), "8"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    try:
        with pytest.raises(StoreBusyError, match="being rebuilt"):
            with store.connect(read_only=True, wait_s=1.0):
                pass
        result = identifier.identify([("x", photo_folder / "Natrix_natrix" / "02.jpg")])
        assert result.species[0].binomial_name == "Natrix natrix"
        # a read that starts during the rebuild and may wait long enough succeeds once the writer lets go
        with store.connect(read_only=True, wait_s=20.0) as con:
            assert len(con.execute("SELECT * FROM species").fetchall()) == 3
    finally:
        holder.wait(timeout=30)
    assert len(store.query("SELECT * FROM species")) == 3


def test_dashboard_pages_say_the_store_is_being_rebuilt(store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SNAKEWEB_STORE", str(store.root))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()  # loads while the store is free
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.db_path), "20"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    try:
        app.switch_page("views/review.py").run()
        assert not app.exception
        assert any("being rebuilt" in e.value for e in app.error)
    finally:
        holder.wait(timeout=60)
