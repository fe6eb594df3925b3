"""Team review: a queue of observations worth a second look, and reviews stored in DuckDB with reviewer,
time, old and new label. Writes from many reviewers go through one lock per store (DuckDB allows one
writer per file) and retry briefly when another process holds the file."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.species import taxon_key
from snakeweb.store import Store, StoreBusyError
from snakeweb.tables import Column, read_table

REVIEWS_TABLE = """
CREATE SEQUENCE IF NOT EXISTS review_ids START 1;
CREATE TABLE IF NOT EXISTS reviews (
    review_id BIGINT PRIMARY KEY DEFAULT nextval('review_ids'),
    observation_id VARCHAR NOT NULL,
    reviewer VARCHAR NOT NULL,
    reviewed_at TIMESTAMP NOT NULL,
    old_class_id BIGINT,
    new_class_id BIGINT NOT NULL,
    note VARCHAR
);
-- the answer record (snakeweb/schemas) the store held for the observation when it was reviewed: which model said what
ALTER TABLE reviews ADD COLUMN IF NOT EXISTS answer VARCHAR;
"""
# the answer the store holds for an observation ($1), if the predict stage made answers
ANSWER_AT_REVIEW = "(SELECT record FROM answers WHERE observation_id = $1)"
QUEUES = ("low-confidence", "venomous-runner-up")
REVIEW_SCHEMA_VERSION = "snakeweb.review/1"
# which review decides a label: the latest in reviewed_at, not in import order (review_id), so a file of older
# reviews imported after newer ones does not undo them; at one time, the later import
LATEST_FIRST = "ORDER BY reviewed_at DESC, review_id DESC"
# an observation's current label ($1 its id): the latest review's, else the ingested one
CURRENT_LABEL = (f"COALESCE((SELECT new_class_id FROM reviews WHERE observation_id = $1 {LATEST_FIRST} LIMIT 1), "
                 "(SELECT class_id FROM observations WHERE observation_id = $1))")
# the label observation $1 had at time $3 (import_reviews' INSERT parameters): the latest review made by then (an
# imported review's old label), else the ingested one; reviews at that very time were imported before, so come before it
LABEL_AT = (f"COALESCE((SELECT new_class_id FROM reviews WHERE observation_id = $1 AND reviewed_at <= $3 {LATEST_FIRST} "
            "LIMIT 1), (SELECT class_id FROM observations WHERE observation_id = $1))")
# each reviewed observation's current label (observation_id, class_id)
REVIEWED_LABELS = (f"SELECT observation_id, new_class_id AS class_id FROM reviews "
                   f"QUALIFY row_number() OVER (PARTITION BY observation_id {LATEST_FIRST}) = 1")
FUTURE_SKEW = pd.Timedelta(days=1)  # a reviewer's clock ahead of this machine's by less is not refused
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_tables_ready: set[str] = set()  # stores whose reviews table this process has already made sure of


def _store_lock(store: Store) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(store.db_path.resolve()), threading.Lock())


def ensure_table(store: Store, ddl: str) -> None:
    """Run a team table's CREATE ... IF NOT EXISTS once per store, table and process (the app writes only the
    team's tables: reviews, range records)."""
    key = f"{store.db_path.resolve()}:{hash(ddl)}"
    if key in _tables_ready:
        return
    with _store_lock(store), store.connect() as con:
        con.execute(ddl)
    _tables_ready.add(key)


def ensure_reviews_table(store: Store) -> None:
    ensure_table(store, REVIEWS_TABLE)


def write_with_retries(store: Store, work, what: str, wait_s: float = 60.0) -> None:
    """Run `work(con)` in one transaction under the store's lock, retrying while another process (or a
    read-only connection of this one) holds the file, for up to `wait_s` seconds (a time budget, not a count
    of tries: on a loaded machine each writer holds the file longer); a SnakewebError from `work` rolls back
    and is raised. `what` names the record in the sentence said when the store stays busy."""
    deadline, attempt = time.monotonic() + wait_s, 0
    while time.monotonic() < deadline:
        try:
            with _store_lock(store), store.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    work(con)
                except SnakewebError:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            return
        except (StoreBusyError, duckdb.TransactionException, duckdb.IOException):  # busy (Store.connect waited), a conflict
            pass
        attempt += 1
        time.sleep(min(0.02 * attempt, 0.5))
    raise SnakewebError(f"The store stayed busy; your {what} was not saved. Try again in a moment.")


def review_queue(store: Store, kind: str = "low-confidence", limit: int = 50) -> pd.DataFrame:
    """Observations to check: lowest top-1 probability first, or those whose runner-up is a venomous (or
    unknown-status) species while the top-1 is harmless (closest calls first). Already reviewed observations
    are left out. Raises StalePredictionsError (snakeweb.stored_predictions: run predict) when the stored predictions
    are not the current head's: a queue ordered by another head's or damaged rows would send reviewers to the wrong
    observations with the wrong species named, and running the head here, at every page view, is predict's work."""
    from snakeweb.stored_predictions import require_predictions

    require_predictions(store)
    ensure_reviews_table(store)
    # the answer the store gives each observation (predict stage), where it has one
    with store.connect(read_only=True) as con:
        has_answers = _has_table(con, "answers")
    answer_columns = (", a.prediction AS answer, a.prediction_rank AS answer_rank, a.prediction_source AS answer_source, "
                      "a.p_venomous") if has_answers else ""
    answer_join = "LEFT JOIN answers a ON a.observation_id = p1.observation_id " if has_answers else ""
    base = (
        "SELECT p1.observation_id, p1.class_id AS top_class_id, s1.binomial_name AS top_species, p1.probability AS top_probability, "
        "COALESCE(s1.venom_status, 'unknown') AS top_venom_status, p2.class_id AS second_class_id, "
        "s2.binomial_name AS second_species, p2.probability AS second_probability, "
        "COALESCE(s2.venom_status, 'unknown') AS second_venom_status, o.class_id AS label"
        f"{answer_columns} FROM predictions p1 LEFT JOIN predictions p2 ON p2.observation_id = p1.observation_id AND p2.rank = 2 "
        "LEFT JOIN species s1 ON s1.class_id = p1.class_id LEFT JOIN species s2 ON s2.class_id = p2.class_id "
        "JOIN observations o ON o.observation_id = p1.observation_id "
        f"{answer_join}WHERE p1.rank = 1 AND p1.observation_id NOT IN (SELECT observation_id FROM reviews) "
    )
    if kind == "low-confidence":
        sql = base + "ORDER BY p1.probability ASC, p1.observation_id LIMIT ?"
    elif kind == "venomous-runner-up":
        # unknown venom status counts as possibly venomous: a harmless call with such a runner-up needs a look
        sql = base + ("AND COALESCE(s2.venom_status, 'unknown') <> 'harmless' AND s1.venom_status = 'harmless' "
                      "ORDER BY p1.probability - p2.probability ASC, p1.observation_id LIMIT ?")
    else:
        raise SnakewebError(f"Unknown review queue {kind!r}; use one of {', '.join(QUEUES)}.")
    return store.query(sql, [limit])


def add_review(store: Store, observation_id: str, reviewer: str, new_class_id: int, note: str = "",
               wait_s: float = 60.0) -> None:
    """Store one review. The old label is the observation's current label (the latest review's, else the
    ingested one)."""
    if not reviewer.strip():
        raise SnakewebError("A review needs the reviewer's name.")
    ensure_reviews_table(store)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        known = con.execute("SELECT count(*) FROM species WHERE class_id = ?", [int(new_class_id)]).fetchall()[0][0]
        current = con.execute(f"SELECT {CURRENT_LABEL}, (SELECT count(*) FROM observations WHERE observation_id = $1)",
                              [str(observation_id)]).fetchall()[0]
        if not current[1]:
            raise SnakewebError(f"Observation {observation_id!r} is not in this store.")
        if not known:
            raise SnakewebError(f"Class id {new_class_id} is not in this store's species table.")
        answer = ANSWER_AT_REVIEW if _has_table(con, "answers") else "NULL"
        con.execute(
            "INSERT INTO reviews (observation_id, reviewer, reviewed_at, old_class_id, new_class_id, note, answer) "
            f"VALUES ($1, $2, $3, $4, $5, $6, {answer})",
            [str(observation_id), reviewer.strip(), datetime.now(UTC).replace(tzinfo=None), current[0], int(new_class_id), note],
        )

    write_with_retries(store, work, "review", wait_s)


def reviews(store: Store) -> pd.DataFrame:
    ensure_reviews_table(store)
    return store.query(
        "SELECT r.*, so.binomial_name AS old_species, sn.binomial_name AS new_species FROM reviews r "
        "LEFT JOIN species so ON so.class_id = r.old_class_id LEFT JOIN species sn ON sn.class_id = r.new_class_id "
        "ORDER BY review_id"
    )


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


# the review export's columns after the review's own: the answer it was made on and where that answer came from
ANSWER_FIELDS = ("prediction", "prediction_class_id", "prediction_rank", "prediction_score", "prediction_source", "p_venomous",
                 "venom_status", "out_of_range", "out_of_store")
PROVENANCE_FIELDS = ("snakeweb_version", "model_fingerprint", "head_id", "store_id")


def review_export(store: Store) -> pd.DataFrame:
    """Every review with the answer the store held when it was made and that answer's provenance (one row per
    review; empty answer cells for reviews made before the store had answers, or imported): the Review page's
    CSV, which `import_reviews` reads back. Rows follow snakeweb/schemas/output.schema.json (`review`)."""
    frame = reviews(store)
    answers = [json.loads(a) if isinstance(a, str) else {} for a in frame.get("answer", pd.Series([None] * len(frame)))]
    for field in ANSWER_FIELDS:
        frame[field] = [a.get(field) for a in answers]
    for field in PROVENANCE_FIELDS:
        frame[field] = [(a.get("provenance") or {}).get(field) for a in answers]
    # the settings behind the answer (thresholds, range mode, country table, ...), as JSON text in one cell
    frame["decision"] = [json.dumps((a.get("provenance") or {})["decision"]) if (a.get("provenance") or {}).get("decision") else None
                         for a in answers]
    for column in ("review_id", "old_class_id", "new_class_id", "prediction_class_id"):  # whole numbers, never 405.0
        frame[column] = pd.array(frame[column], dtype="Int64")
    frame = frame.drop(columns=["answer"], errors="ignore")
    frame.insert(0, "schema", REVIEW_SCHEMA_VERSION)
    frame["reviewed_at"] = frame["reviewed_at"].map(lambda t: t.isoformat(sep=" ") if pd.notna(t) else None)
    return frame


def reviewed_labels(store: Store) -> pd.DataFrame:
    """The latest reviewed label per observation (latest in reviewed_at; at one time, the later import): what
    `train --include-reviews` learns from."""
    ensure_reviews_table(store)
    return store.query(REVIEWED_LABELS)


REVIEW_EXPORT_COLUMNS = (
    Column("observation_id", ("observation",), required=True),
    Column("reviewer", ("reviewed_by",), required=True),
    Column("new_class_id", ("class_id", "new_class"), required=True),
    Column("reviewed_at", ("time", "timestamp")),
    Column("old_class_id", ("old_class",)),
    Column("note", ("notes", "comment")),
    Column("new_species"),  # the export's name of new_class_id: an edit to it must not pass unnoticed
)


def import_reviews(store: Store, path: str | Path) -> dict[str, int]:
    """Add the reviews of a review export (the Review page's CSV, e.g. from another reviewer's dashboard).

    Every row must name an observation and a class of this store, a reviewer, and (when the column is there)
    a readable time; otherwise nothing is added and a SnakewebError names the rows. A review already in the
    store (same observation, reviewer, time and class) is not added twice; nor is a row without a reviewed_at when
    the store (or the file, above it) holds a review of the same observation, reviewer, class and note, at any time
    (each import would otherwise stamp it anew). Returns counts: `untimed_already_present` counts the latter.
    """
    table = read_table(path, "review export", REVIEW_EXPORT_COLUMNS)
    rows = pd.DataFrame({"observation_id": table.identifiers("observation_id").where(table.frame["observation_id"] != ""),
                         "reviewer": table.text("reviewer"), "new_class_id": table.ids("new_class_id")})
    for column in ("observation_id", "reviewer"):
        if rows[column].isna().any():
            raise table.fail(f"{int(rows[column].isna().sum())} row(s) have no {column} ({table.where(rows[column].isna(), column)}).")
    rows["note"] = table.text("note").fillna("") if table.has("note") else ""
    now = datetime.now(UTC).replace(tzinfo=None)
    if table.has("reviewed_at"):
        # ISO 8601 only: 03/04/2024 is 3 April to some reviewers and 4 March to others
        text = table.frame["reviewed_at"]
        iso = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")
        times = pd.to_datetime(text.where(iso), errors="coerce", utc=True, format="ISO8601")
        bad = (text != "") & times.isna()
        if bad.any():
            raise table.fail(f"{int(bad.sum())} reviewed_at value(s) are not an ISO date and time ({table.where(bad, 'reviewed_at')}); "
                             "write them as 2026-11-30 17:05:00 (as the Review page exports them).")
        untimed = times.isna().to_numpy()
        # one unit for parsed and filled times (pandas refuses a datetime into a datetime64[s] column in a future version)
        rows["reviewed_at"] = times.dt.tz_convert(None).astype("datetime64[us]").fillna(pd.Timestamp(now))
        future = (rows["reviewed_at"] > now + FUTURE_SKEW).to_numpy()
        if future.any():  # it would be the current label until that date, whatever reviews came after it
            raise table.fail(f"{int(future.sum())} reviewed_at value(s) are in the future ({table.where(future, 'reviewed_at')}); "
                             "correct those dates (or the reviewer's clock) to when the reviews were made.")
    else:
        untimed = np.ones(len(rows), dtype=bool)
        rows["reviewed_at"] = now
    clash = rows.groupby(["observation_id", "reviewed_at"])["new_class_id"].transform("nunique") > 1
    if clash.any():
        raise table.fail(f"{int(clash.sum())} rows review one observation at one time with different classes "
                         f"({table.where(clash.to_numpy(), 'new_class_id')}); keep the one that is right.")
    ensure_reviews_table(store)
    with _store_lock(store), store.transaction() as con:
        known_obs = set(con.execute("SELECT observation_id FROM observations").df()["observation_id"])
        known_classes = set(con.execute("SELECT class_id FROM species").df()["class_id"].astype(int))
        checks = (("observation_id", rows["observation_id"], known_obs, "observation"),
                  ("new_class_id", rows["new_class_id"].astype(int), known_classes, "class id"))
        for column, values, known, what in checks:
            unknown = ~values.isin(known)
            if unknown.any():
                raise table.fail(f"{int(unknown.sum())} {what}(s) are not in the store {store.root} "
                                 f"({table.where(unknown.to_numpy(), column)}); import reviews into the store they were made on.")
        existing = con.execute("SELECT observation_id, reviewer, reviewed_at, new_class_id, coalesce(note, '') AS note "
                               "FROM reviews").df().astype({"new_class_id": "Int64"})
        key = ["observation_id", "reviewer", "reviewed_at", "new_class_id"]
        already = _found_in(rows, existing, key)
        # a row without a time: the same review made at any time (in the store, or higher in this file) is this one
        untimed_key = ["observation_id", "reviewer", "new_class_id", "note"]
        untimed_already = untimed & (_found_in(rows, existing, untimed_key) | rows.duplicated(untimed_key).to_numpy())
        already = already | untimed_already
        if table.has("new_species"):
            names = dict(con.execute("SELECT class_id, binomial_name FROM species").fetchall())
            given = table.taxon_names("new_species", ids_column="new_class_id")
            differs = given.notna() & (given.map(lambda n: taxon_key(n) if n else "")
                                       != rows["new_class_id"].map(lambda c: taxon_key(names.get(int(c), ""))))
            if differs.any():
                raise table.fail(f"{int(differs.sum())} row(s) name a new_species that is not the species of their new_class_id "
                                 f"({table.where(differs.to_numpy(), 'new_species')}); change new_class_id to the species meant.")
        fresh = rows[~already].sort_values("reviewed_at", kind="stable")
        stated = table.ids("old_class_id", missing_ok=True).to_numpy(dtype=object, na_value=None) if table.has("old_class_id") \
            else np.full(len(rows), None, dtype=object)
        mismatch = np.zeros(len(rows), dtype=bool)
        # one at a time, oldest first: each review's old label is this store's label at its time (LABEL_AT), the
        # reviews of the file before it included
        for i, row in zip(fresh.index, fresh.itertuples()):  # rows' index is 0..n-1: positions
            old = con.execute(
                "INSERT INTO reviews (observation_id, reviewer, reviewed_at, old_class_id, new_class_id, note) "
                f"SELECT $1, $2, $3, {LABEL_AT}, $4, $5 RETURNING old_class_id",
                [row.observation_id, row.reviewer, row.reviewed_at.to_pydatetime(), int(row.new_class_id), row.note]).fetchone()[0]
            # the label a review was made on must be this store's label then: stores that number species differently
            # (or a file edited by hand) would otherwise relabel photos as other species (rolled back below)
            mismatch[i] = stated[i] is not None and old is not None and int(stated[i]) != int(old)
        if mismatch.any():
            raise table.fail(f"{int(mismatch.sum())} review(s) were made on another label than this store's "
                             f"({table.where(mismatch, 'old_class_id')}); the stores may number species differently: "
                             "import reviews into the store they were made on.")
    return {"added": len(fresh), "already_present": len(rows) - len(fresh), "untimed_already_present": int(untimed_already.sum())}


def _found_in(rows: pd.DataFrame, existing: pd.DataFrame, key: list[str]) -> np.ndarray:
    """Which of `rows` have a row of `existing` with the same values in `key` (a boolean per row, in order)."""
    return rows.merge(existing[key].drop_duplicates(), on=key, how="left", indicator=True)["_merge"].eq("both").to_numpy()
