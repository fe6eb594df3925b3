"""`--remove-gone`: take photos that are gone from an ingested folder out of the store, inside ingest's transaction.

A store only grows unless the user asks: a photo moved, renamed or deleted may come back (a drive not mounted, a
folder being reorganised), so ingest only names gone photos by default. With the option, their rows go, and the
stages after ingest notice on their own (index and map: the embedded ids change; the head: its training digest covers
its training and validation photos; predictions: recomputed at every predict). The head is also marked stale here, so
the store says so until the next train.
Reviews are never removed: they are a team's work, keyed by observation, and apply again if the photo comes back.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import duckdb
import pandas as pd

from snakeweb.store import set_meta

REMOVED_META = "removed_images"  # run metadata: one record per ingest that removed photos
SHOWN = 3  # names printed; run metadata keeps a few more
RECORDED = 20


@dataclass
class Removal:
    """What one ingest with --remove-gone took out of the store."""

    folder: str
    images: int = 0
    embedded: int = 0
    observations_emptied: int = 0
    observations_touched: int = 0
    reviews_kept: int = 0
    head_stale: bool = False
    examples: list[str] = field(default_factory=list)
    max_image_id: int = -1

    def summary(self) -> str:
        """The lines ingest prints: what was removed, what was kept, and what the next stages redo."""
        if not self.images:
            return ""
        shown = ", ".join(self.examples[:SHOWN]) + (", ..." if self.images > SHOWN else "")
        line = (f"ingest: removed {self.images} photo(s) gone from {self.folder} ({shown}): their rows and {self.embedded} "
                f"vector(s), the predictions of {self.observations_touched} observation(s) they belonged to, and "
                f"{self.observations_emptied} observation(s) left with no photo")
        if self.reviews_kept:
            line += (f"; {self.reviews_kept} review(s) of those observations are kept in the reviews table (they count "
                     "again if the photos come back under the same names)")
        return line + ("; the index, head, predictions and map are rebuilt by the next build (or the index, train, "
                       "predict and project stages)")


def first_free_image_id(con: duckdb.DuckDBPyConnection) -> int:
    """The next image id for a new photo: above every stored one and every removed one, so a removed photo's id
    (still in an index, head or exported answer made before the removal) never names another photo."""
    stored = con.execute("SELECT COALESCE(MAX(image_id), -1) FROM images").fetchall()[0][0]
    rows = con.execute("SELECT value FROM run_metadata WHERE key = ?", [REMOVED_META]).fetchall()
    removed = max((run.get("max_image_id", -1) for run in json.loads(rows[0][0])), default=-1) if rows else -1
    return int(max(stored, removed)) + 1


def drop_derived_rows(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> None:
    """Inside the caller's transaction: delete what was made from the photos `rows` (columns image_id, observation_id)
    name: their vectors (embeddings, training views), map points, and the predictions and answers of their
    observations (made with them). Their images rows, and reviews, stay (removal and changed photos decide those)."""
    # each statement's result is fetched: DuckDB refuses the next unregister while a result is unfinished
    con.register("_derived_ids", rows[["image_id"]].astype("int64"))
    for table in ("embeddings", "view_embeddings", "projection"):
        con.execute(f"DELETE FROM {table} WHERE image_id IN (SELECT image_id FROM _derived_ids)").fetchall()
    con.unregister("_derived_ids")
    con.register("_derived_observations", pd.DataFrame({"observation_id": rows["observation_id"].astype(str).unique()}))
    con.execute("DELETE FROM predictions WHERE observation_id IN (SELECT observation_id FROM _derived_observations)").fetchall()
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "answers" in tables:  # made by predict
        con.execute("DELETE FROM answers WHERE observation_id IN (SELECT observation_id FROM _derived_observations)").fetchall()
    con.unregister("_derived_observations")


def mark_head_stale(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, what_happened: str) -> bool:
    """Inside the caller's transaction: when an embedded photo of `rows` (columns embedded, split) was one the head
    trained or was validated on, clear the recorded head's training digest and record why it is stale ("N photo(s) it
    was trained or validated on <what_happened>"; `check` fails it, the commands using it say so, train retrains it).
    Returns whether it was."""
    trained_on = int((rows["embedded"] & rows["split"].isin(["train", "val", "unlabelled"])).sum())
    if not trained_on:
        return False
    head = con.execute("SELECT value FROM run_metadata WHERE key = 'head'").fetchall()
    if head:
        recorded = json.loads(head[0][0])
        recorded.update(training_digest=None, stale=f"{trained_on} photo(s) it was trained or validated on {what_happened}")
        set_meta(con, "head", recorded)
    return True


def remove_images(con: duckdb.DuckDBPyConnection, paths: list[str], folder: str) -> Removal:
    """Delete the images at `paths` inside the caller's transaction `con`: their rows, vectors (embeddings, training
    views), map points, the predictions and answers of every observation they belonged to (made with them), and
    observations left with no image. Reviews stay. A head trained or validated with one of them is marked stale
    so `train` retrains it. Appends a record to run metadata `removed_images`. Returns what was removed."""
    removal = Removal(folder=folder)
    if not paths:
        return removal
    con.register("_gone_paths", pd.DataFrame({"path": list(paths)}))
    rows = con.execute("SELECT i.image_id, i.observation_id, i.split, i.path, e.image_id IS NOT NULL AS embedded FROM images i "
                       "LEFT JOIN embeddings e USING (image_id) WHERE i.path IN (SELECT path FROM _gone_paths) "
                       "ORDER BY i.path").df()
    con.unregister("_gone_paths")
    if rows.empty:
        return removal
    drop_derived_rows(con, rows)
    con.register("_gone_ids", rows[["image_id"]])
    con.execute("DELETE FROM images WHERE image_id IN (SELECT image_id FROM _gone_ids)").fetchall()
    con.unregister("_gone_ids")
    touched = pd.DataFrame({"observation_id": rows["observation_id"].astype(str).unique()})
    con.register("_touched", touched)
    emptied = con.execute("SELECT observation_id FROM _touched WHERE observation_id NOT IN "
                          "(SELECT observation_id FROM images)").df()
    con.register("_emptied", emptied)
    con.execute("DELETE FROM observations WHERE observation_id IN (SELECT observation_id FROM _emptied)").fetchall()
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "reviews" in tables:
        removal.reviews_kept = int(con.execute(
            "SELECT count(*) FROM reviews WHERE observation_id IN (SELECT observation_id FROM _emptied)").fetchall()[0][0])
    con.unregister("_touched")
    con.unregister("_emptied")
    removal.images, removal.embedded = len(rows), int(rows["embedded"].sum())
    removal.observations_touched, removal.observations_emptied = len(touched), len(emptied)
    removal.examples = rows["path"].map(lambda p: p.removeprefix(folder).lstrip("/")).head(RECORDED).tolist()
    removal.max_image_id = int(rows["image_id"].max())
    # the next train would notice by its digest; the mark says it before then (a lone `ingest --remove-gone`)
    removal.head_stale = mark_head_stale(con, rows, "were removed")
    previous = con.execute("SELECT value FROM run_metadata WHERE key = ?", [REMOVED_META]).fetchall()
    runs = json.loads(previous[0][0]) if previous else []
    set_meta(con, REMOVED_META, [*runs, {**asdict(removal), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])
    return removal
