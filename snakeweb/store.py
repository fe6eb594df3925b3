"""The store: one directory holding a DuckDB file (the source of truth) and the artifacts built from it.

    store/
      snakeweb.duckdb   species, observations, images, embeddings, predictions, projection, run metadata
      index.faiss       FAISS index whose ids are images.image_id
      head.pt           trained head with its label map, feature kind and model fingerprint

Artifacts are written to a temporary file and renamed, so a half-written one is never loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError, shell_word
from snakeweb.store_migration import migrate, needs_migration

DB_NAME = "snakeweb.duckdb"
INDEX_NAME = "index.faiss"
HEAD_NAME = "head.pt"
LOCK_NAME = ".writer.lock"  # held by the building commands (snakeweb.writer_lock)
HOLDER_NAME = ".writer.json"  # who holds it: filelock truncates the lock file at every attempt, so not there

SCHEMA = """
CREATE TABLE IF NOT EXISTS species (
    class_id BIGINT PRIMARY KEY, binomial_name VARCHAR NOT NULL, genus VARCHAR,
    venom_status VARCHAR NOT NULL CHECK (venom_status IN ('venomous', 'harmless', 'unknown')),
    family VARCHAR  -- from a taxonomy table (snakeweb.taxonomy); 'unknown', or NULL in a store made before families
);
CREATE TABLE IF NOT EXISTS observations (
    observation_id VARCHAR PRIMARY KEY, class_id BIGINT, country_code VARCHAR, split VARCHAR NOT NULL,
    subspecies VARCHAR  -- the trinomial a folder or metadata name gave, when it named a subspecies
);
CREATE TABLE IF NOT EXISTS images (
    image_id BIGINT PRIMARY KEY,
    observation_id VARCHAR NOT NULL,
    path VARCHAR NOT NULL UNIQUE,
    class_id BIGINT,
    split VARCHAR NOT NULL,
    sha256 VARCHAR,
    size_bytes BIGINT,
    width INTEGER,
    height INTEGER,
    status VARCHAR NOT NULL DEFAULT 'pending',  -- pending | ok | error
    error VARCHAR,
    decoder VARCHAR,  -- who decoded it for the embed stage: pillow (CPU) or nvjpeg (GPU)
    mtime_ns BIGINT  -- the file's modification time when embedded (snakeweb.changed_photos); NULL in older stores
);
CREATE TABLE IF NOT EXISTS embeddings (image_id BIGINT PRIMARY KEY, vector FLOAT[] NOT NULL);
CREATE TABLE IF NOT EXISTS view_embeddings (
    image_id BIGINT NOT NULL, view VARCHAR NOT NULL, vector FLOAT[] NOT NULL, PRIMARY KEY (image_id, view)
);
CREATE TABLE IF NOT EXISTS predictions (
    observation_id VARCHAR NOT NULL, rank INTEGER NOT NULL, class_id BIGINT NOT NULL, probability DOUBLE NOT NULL,
    PRIMARY KEY (observation_id, rank)
);
CREATE TABLE IF NOT EXISTS projection (image_id BIGINT PRIMARY KEY, x DOUBLE NOT NULL, y DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS run_metadata (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""


RETRY_DELAY_MAX_S = 0.2  # a connection waiting for a busy store file tries again at least this often
# DuckDB's memory cap per connection (SNAKEWEB_DUCKDB_MEMORY, a DuckDB size such as 2GB)
DUCKDB_MEMORY = os.environ.get("SNAKEWEB_DUCKDB_MEMORY", "2GB")


class StoreBusyError(SnakewebError):
    """Another process holds the store's DuckDB file (a build, or another dashboard writing a review)."""


class StoreReadOnlyError(SnakewebError):
    """The store's DuckDB file can be read but not written here (a read-only mount, or no write permission)."""


class StoreUnreadableError(SnakewebError):
    """The store's DuckDB file cannot be read: not a DuckDB file, cut short, or damaged (a checksum that fails).
    `check` says it as a failed verdict; every other command as its one sentence."""


# how DuckDB words a damaged file, met on connect or only on a later query that reads the damaged block; after
# one, DuckDB invalidates the whole database ("has been invalidated because of a previous fatal error")
DAMAGED = ("corrupt database file", "could not read enough bytes", "checksum", "has been invalidated",
           "not a valid duckdb database file")


# how the OS words a file this process may not write (EROFS, EACCES, EPERM), as DuckDB passes it on
UNWRITABLE = ("read-only file system", "permission denied", "operation not permitted")


class Store:
    """A store directory; `connect()` opens its DuckDB file."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    @property
    def head_path(self) -> Path:
        return self.root / HEAD_NAME

    def exists(self) -> bool:
        return self.db_path.is_file()

    def create(self) -> Store:
        self.refuse_a_file()
        self.root.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.execute(SCHEMA)
            migrate(con)
        return self

    @contextlib.contextmanager
    def refused_before_embedding(self, created: bool) -> Iterator[None]:
        """Around a build's embed stage, after its ingest: a refusal (SnakewebError) before the stage's first write
        (a model folder that will not load, a feature kind the model lacks) leaves no half-made store. A store this
        build `created` is removed again (its DuckDB file and write-ahead log; the writer lock removes a folder it
        made and left empty); an older store keeps the photos ingested into it, and the sentence says so and that
        the same build goes on from there. A refusal after embedding began, and an interruption (Ctrl-C), keep the
        work: the stages resume."""
        began = self.get_meta("embedded_at")
        try:
            yield
        except SnakewebError as exc:
            if self.get_meta("embedded_at") != began:
                raise
            if created:
                for path in (self.db_path, self.db_path.with_name(self.db_path.name + ".wal")):
                    path.unlink(missing_ok=True)
                raise
            raise SnakewebError(f"{str(exc).rstrip('.')}; the photos ingested into {self.root} are kept, and the same "
                                "build run again with that put right goes on from there.") from exc

    def refuse_a_file(self) -> None:
        """A store is a folder: a file given as --store (the store's own DuckDB file, or anything else) is named."""
        if self.root.name == DB_NAME and not self.root.is_dir():  # the database file's path, there or not
            raise SnakewebError(f"--store {self.root} names the store's database file; give its folder: "
                                f"--store {shell_word(self.root.parent)}")
        if self.root.exists() and not self.root.is_dir():
            raise SnakewebError(f"--store {self.root} is a file; a store is a folder (the one holding {DB_NAME}). "
                                "Give a new or existing store folder.")

    def require_writable(self) -> Store:
        """Open the DuckDB file for writing once and close it: raises StoreReadOnlyError (one sentence) where it
        cannot be written here, so a writing command stops before its work (a train refused only at its last
        write had already replaced head.pt), and StoreBusyError while another process writes it."""
        from snakeweb.store_tables import missing_tables, restore_tables

        with self.connect() as con:
            missing = missing_tables(con)
            if missing:  # a table dropped from the file: made again, empty, and its stage runs again
                restore_tables(con, missing)
        return self

    def require(self) -> Store:
        self.refuse_a_file()
        if not self.exists():
            raise SnakewebError(
                f"No store at {self.root}. Build one with `python -m pipelines build --store {shell_word(self.root)} --images DIR`."
            )
        from snakeweb.store_tables import refuse_missing_tables

        refuse_missing_tables(self)  # a table dropped from the file: a sentence naming the command that makes it again
        if needs_migration(self):
            with self.connect() as con:
                migrate(con)
        return self

    @contextlib.contextmanager
    def connect(self, read_only: bool = False, wait_s: float = 5.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the DuckDB file, waiting up to `wait_s` seconds while the file is busy, else
        StoreBusyError. DuckDB lets one process write a file at a time (IOException naming the lock), and within
        one process it refuses a read-only and a read-write connection to the same file at once
        (ConnectionException: "different configuration"), which the dashboard meets when one session saves a
        review while another reads. Writers hold the file for a batch at a time, so waiting usually succeeds."""
        deadline, delay = time.monotonic() + wait_s, 0.01
        while True:
            try:
                con = duckdb.connect(str(self.db_path), read_only=read_only)
                break
            except duckdb.Error as exc:  # a damaged file is a bare duckdb.Error, a locked one an IOException
                message = str(exc).lower()
                if not read_only and any(reason in message for reason in UNWRITABLE) and self.db_path.is_file():
                    raise StoreReadOnlyError(
                        f"The store {self.root} can be read but not written here ({_os_reason(exc)}); make {self.db_path} "
                        "and its folder writable for this user, or copy the store to a folder you may write to.") from exc
                if ("lock" not in message and "different configuration" not in message) or _damaged(exc):
                    raise StoreUnreadableError(
                        f"The store file {self.db_path} cannot be opened ({_first_line(exc)}); if it was copied or "
                        "moved while a build was writing it, or the disk damaged it, build the store again.") from exc
                if time.monotonic() > deadline:
                    raise StoreBusyError(
                        f"The store {self.root} is being rebuilt or written (by another process or dashboard session); "
                        "try again in a moment."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX_S)
        # DuckDB would cache up to 80% of RAM: a 182k x 3840 import held 11.5 GB. A cap makes it write through to the
        # file and spill big sorts to <store>/snakeweb.duckdb.tmp instead, so a pipeline and the dashboard share the machine
        try:
            con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        except duckdb.Error as exc:
            con.close()
            raise SnakewebError(f"SNAKEWEB_DUCKDB_MEMORY={DUCKDB_MEMORY!r} is not a size DuckDB takes ({exc}); "
                                "use a size such as 2GB or 512MB.") from exc
        try:
            yield con
        except duckdb.Error as exc:
            # damage in a block the connect did not read surfaces only here, on the query that reads it (a file cut
            # short opens; its first SELECT fails): said once, here, for every command and dashboard page
            if not _damaged(exc):
                raise
            raise StoreUnreadableError(
                f"The store file {self.db_path} is damaged ({_first_line(exc)}); restore it from a copy or build the "
                "store again.") from exc
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: a build killed inside it leaves the store as it was before."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    # run metadata: JSON values under string keys
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.connect(read_only=True) as con:
            rows = con.execute("SELECT value FROM run_metadata WHERE key = ?", [key]).fetchall()
        return json.loads(rows[0][0]) if rows else default

    def table_digests(self) -> dict[str, str]:
        """One digest per table of what the stages read (one query): `images` (id, observation, label, status,
        path, split), `embeddings` (which images have vectors), `species` (names, venom status, taxonomy),
        `observations` (labels, countries, splits), `predictions` and `run_metadata`. Reviews and range records
        are left out: they are watched apart (content_version; snakeweb.ranges.overrides_version)."""
        from snakeweb.store_tables import refuse_missing_tables

        names = ("images", "embeddings", "species", "observations", "predictions", "run_metadata")
        refuse_missing_tables(self, names)  # the dashboard's key: a sentence, not a CatalogException
        with self.connect(read_only=True) as con:
            digests = con.execute(
                "SELECT (SELECT count(*) || ':' || sum(hash(image_id, observation_id, class_id, status, path, split)) FROM images), "
                "(SELECT count(*) || ':' || sum(hash(image_id)) FROM embeddings), "
                "(SELECT sum(hash(class_id, binomial_name, genus, family, venom_status)) FROM species), "
                "(SELECT sum(hash(observation_id, class_id, country_code, split)) FROM observations), "
                "(SELECT sum(hash(observation_id, rank, class_id, probability)) FROM predictions), "
                "(SELECT sum(hash(key, value)) FROM run_metadata)").fetchone()
        return dict(zip(names, map(str, digests)))

    def content_version(self) -> tuple:
        """A key that changes when what identify, search and the maps read changes (photos, labels, species,
        observations' countries and splits, vectors, predictions, any run metadata, the head and index files) and not
        when a review or a range record is saved: keyed on the database file's modification time instead, every review
        made the dashboard reload the model, head, index and image catalogue (2.3 s a save on a 182k-image store).
        Range records reach identify through snakeweb.ranges.LivePrior, which watches them itself."""
        files = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in (self.head_path, self.index_path))
        return tuple(self.table_digests().values()) + files

    def all_meta(self) -> dict[str, Any]:
        frame = self.query("SELECT key, value FROM run_metadata ORDER BY key")
        return {k: json.loads(v) for k, v in zip(frame["key"], frame["value"])}

    def species(self) -> pd.DataFrame:
        """One row per class: class_id, binomial_name, genus, venom_status, family (NULL read as "unknown")."""
        frame = self.query("SELECT * FROM species ORDER BY class_id")
        if "family" in frame:  # a store not yet migrated has no family column; ingest and require() add it
            frame["family"] = frame["family"].fillna("unknown")
        return frame

    def require_embeddings(self) -> Store:
        """Raises SnakewebError (run the embed stage) when nothing in the store is embedded yet."""
        if self.get_meta("model") is None or not len(self.embedded_ids()):
            raise SnakewebError(f"The store {self.root} has no embeddings yet; run `python -m pipelines embed --store "
                                f"{shell_word(self.root)}` first.")
        return self

    def embedded_ids(self) -> np.ndarray:
        """Image ids that have an embedding, sorted; cheap, for up-to-date and integrity checks."""
        return self.query("SELECT image_id FROM embeddings ORDER BY image_id")["image_id"].to_numpy(np.int64)

    def embeddings(self, where: str = "TRUE", ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(image_ids int64 [n], vectors float32 [n, D]) of embedded images matching a condition on `images i`
        (and, with `ids`, among those image ids), ordered by id. Streamed by `read_keyed_vectors`, so reading
        182k x 3840 vectors (2.8 GB) peaks at about that plus a batch."""
        select = f"FROM embeddings e JOIN images i USING (image_id) WHERE {where}"
        with self.connect(read_only=True) as con:
            con.execute("BEGIN TRANSACTION")  # one snapshot for the ids and the vectors
            if ids is not None:
                import pyarrow as pa

                con.register("_wanted_ids", pa.table({"image_id": np.asarray(ids, dtype=np.int64)}))
                select += " AND e.image_id IN (SELECT image_id FROM _wanted_ids)"
            # fetched to the end: DuckDB 2 refuses a new query on a connection with an unfinished result
            found = np.sort(con.execute(f"SELECT e.image_id {select}").fetchnumpy()["image_id"].astype(np.int64))
            vectors = read_keyed_vectors(con, f"SELECT e.image_id AS key, e.vector {select}", [], found)
            con.execute("COMMIT")
        return found, vectors


def read_keyed_vectors(con: duckdb.DuckDBPyConnection, sql: str, params: list, keys: np.ndarray) -> np.ndarray:
    """float32 [len(keys), D]: the rows of `sql` (columns `key` BIGINT and `vector` FLOAT[], one row per key of the
    sorted, unique int64 `keys`) streamed in Arrow batches into the row of their key, in one preallocated matrix.
    An ORDER BY on the vectors made DuckDB sort all of them in memory first, past its memory cap
    (SNAKEWEB_DUCKDB_MEMORY) at 182k x 3840; an object array of lists, np.stack and astype held three copies.
    Run it inside the transaction `keys` were read in. Raises RuntimeError when a row's key is not in `keys`."""
    if not len(keys):
        return np.zeros((0, 0), dtype=np.float32)
    # one row's length: the cast to FLOAT[D] below refuses any other
    dim = int(con.execute(f"SELECT len(vector) FROM ({sql}) LIMIT 1", params).fetchall()[0][0])
    vectors = np.empty((len(keys), dim), np.float32)
    filled = np.zeros(len(keys), dtype=bool)
    # a fixed-size FLOAT[D] column flattens to one float32 buffer per batch, without per-row objects;
    # con.sql streams, where an execute() result's Arrow reader copies every row first
    relation = con.sql(f"SELECT key, vector::FLOAT[{dim}] AS vector FROM ({sql})", params=params or None)
    for batch in relation.to_arrow_reader(max(1024, 2**22 // dim)):
        batch_keys = batch.column(0).to_numpy()
        rows = np.minimum(np.searchsorted(keys, batch_keys), len(keys) - 1)
        if not np.array_equal(keys[rows], batch_keys):
            raise RuntimeError("the vectors changed while they were read")  # not within one snapshot
        vectors[rows] = batch.column(1).flatten().to_numpy().reshape(batch.num_rows, dim)
        filled[rows] = True
    if not filled.all():
        raise RuntimeError("some vectors were not read")
    return vectors


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: Any) -> None:
    con.execute(
        "INSERT INTO run_metadata VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, json.dumps(value, sort_keys=True, default=str)],
    )


def _damaged(exc: BaseException) -> bool:
    """Whether a DuckDB error says the file itself is damaged (DAMAGED), not busy, locked or a query's fault."""
    message = str(exc).lower()
    return any(words in message for words in DAMAGED)


def _first_line(exc: BaseException) -> str:
    """DuckDB's message without the hints and stack it appends on further lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_reason(exc: BaseException) -> str:
    """'Read-only file system' out of DuckDB's 'IO Error: Cannot open file "...": Read-only file system'."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(": ", 1)[-1]
