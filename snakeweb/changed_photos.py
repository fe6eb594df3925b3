"""Photos replaced in place (same path, new bytes): noticed cheaply, from the file system's size and modification time.

The embed stage records each photo's sha256, byte size and modification time (`images.sha256`, `size_bytes`,
`mtime_ns`). Hashing every file at every ingest is too slow at 182k photos, so ingest and `check` stat the files and
hash only those whose size or modification time differ from the record: a touched file, or one copied back, keeps its
sha256 and is not embedded again. A photo whose bytes did change loses, in ingest's transaction, its vectors, map point
and the predictions and answers of its observation, and goes back to 'pending' so the embed stage reads it again (an
unreadable file then becomes an error row with its reason); a head trained or validated on it is marked stale (its
training digest covers image ids and labels, which did not change). Reviews are kept: they are of the animal.
A photo recorded as unreadable whose file's time changed since is read again too (`unreadable_changed`).
Photos embedded before the size and time were recorded (`mtime_ns` NULL) and imported vectors (no sha256) are not
compared.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from snakeweb.digests import sha256_file
from snakeweb.removal import drop_derived_rows, mark_head_stale
from snakeweb.store import Store, set_meta

SHOWN = 3  # names printed


@dataclass
class Changed:
    """What one comparison of recorded photos against the files on disk found."""

    paths: list[str] = field(default_factory=list)  # bytes differ from the recorded sha256 (or cannot be read now)
    touched: list[str] = field(default_factory=list)  # size or time differ, bytes the same
    unrecorded: int = 0  # no recorded size and time (embedded by an older snakeweb): not compared
    image_ids: list[int] = field(default_factory=list)


def file_stamps(paths: list[str]) -> tuple[list[int | None], list[int | None]]:
    """(size in bytes, modification time in ns) of each path, following links; None for both where it cannot be stat'ed."""
    sizes: list[int | None] = []
    times: list[int | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            sizes.append(None)
            times.append(None)
            continue
        sizes.append(int(info.st_size))
        times.append(int(info.st_mtime_ns))
    return sizes, times


def record_stamps(store: Store, pending: pd.DataFrame) -> None:
    """Record the modification time of the photos (`image_id`, `path`) the embed stage is about to read, before it
    reads them: a file changed while it is read then has a newer time than the record, so the next ingest hashes it
    again rather than missing the change. The size is recorded from the bytes read, with the sha256."""
    if pending.empty:
        return
    _, times = file_stamps(pending["path"].tolist())
    rows = pd.DataFrame({"image_id": pending["image_id"].astype("int64"), "mtime_ns": pd.array(times, dtype="Int64")})
    with store.transaction() as con:
        con.register("_stamps", rows)
        con.execute("UPDATE images i SET mtime_ns = s.mtime_ns FROM _stamps s WHERE i.image_id = s.image_id")
        con.unregister("_stamps")


def compare(rows: pd.DataFrame) -> Changed:
    """Compare recorded photos (columns image_id, path, sha256, size_bytes, mtime_ns) with the files: stat each, hash
    only those whose size or time differ. A file not there is not compared (ingest and `check` say missing files
    apart); one that is there but cannot be read counts as changed, so the embed stage records why."""
    changed = Changed()
    compared = rows[rows["sha256"].notna()]
    recorded = compared["mtime_ns"].notna() & compared["size_bytes"].notna()
    changed.unrecorded = int((~recorded).sum())
    compared = compared[recorded]
    sizes, times = file_stamps(compared["path"].tolist())
    for row, size, mtime in zip(compared.itertuples(index=False), sizes, times):
        if size is None or (size == row.size_bytes and mtime == row.mtime_ns):
            continue
        try:
            same = sha256_file(row.path) == row.sha256
        except OSError:
            same = False
        (changed.touched if same else changed.paths).append(row.path)
        if not same:
            changed.image_ids.append(int(row.image_id))
    return changed


def unreadable_changed(rows: pd.DataFrame) -> list[int]:
    """Image ids of photos recorded as unreadable (columns image_id, path, mtime_ns: the time recorded before the embed
    stage read them) whose file has another modification time now: put right (a good photo copied back, a download
    finished), so the embed stage should read them again. Error rows without a recorded time are not compared."""
    rows = rows[rows["mtime_ns"].notna()]
    _, times = file_stamps(rows["path"].tolist())
    return [int(row.image_id) for row, mtime in zip(rows.itertuples(index=False), times)
            if mtime is not None and mtime != row.mtime_ns]


def stored_on_disk(store: Store) -> Changed:
    """For `check`: the embedded photos whose bytes on disk are no longer those the embed stage read."""
    rows = store.query("SELECT image_id, path, sha256, size_bytes, mtime_ns FROM images WHERE status = 'ok' "
                       "AND decoder IS DISTINCT FROM 'imported' ORDER BY path")
    return compare(rows)


@dataclass
class Refreshed:
    """What one ingest did about photos changed in place."""

    images: int = 0
    embedded: int = 0
    head_stale: bool = False
    examples: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # unreadable photos whose file changed since: read again

    def summary(self) -> str:
        """The lines ingest prints ("" when nothing changed)."""
        retried = (f"ingest: {len(self.retried)} photo(s) that could not be read have changed on disk since (e.g. "
                   f"{', '.join(self.retried[:SHOWN])}); the embed stage reads them again" if self.retried else "")
        if not self.images:
            return retried
        shown = ", ".join(self.examples[:SHOWN]) + (", ..." if self.images > SHOWN else "")
        return (f"ingest: {self.images} photo(s) changed since they were embedded (same path, other bytes: {shown}); their "
                f"{self.embedded} vector(s), map points and the predictions of their observations were dropped, and the "
                "embed stage reads them again" + ("; the head trained or validated on them is retrained" if self.head_stale
                                                  else "") + " (reviews are kept)" + ("\n" + retried if retried else ""))


def refresh_changed(con: duckdb.DuckDBPyConnection, paths: list[str], folder: str) -> Refreshed:
    """Inside ingest's transaction `con`: compare the stored photos at `paths` with their files; those whose bytes
    changed lose their vectors (embeddings, training views), map points and the predictions and answers of their
    observations, and become 'pending' again; the index and map are marked for a rebuild and a head trained or
    validated on one of them stale. Photos only touched get their new time recorded, so they are not hashed again."""
    refreshed = Refreshed()
    if not paths:
        return refreshed
    con.register("_listed", pd.DataFrame({"path": list(paths)}))
    rows = con.execute("SELECT i.image_id, i.path, i.sha256, i.size_bytes, i.mtime_ns, i.split, i.observation_id, "
                       "e.image_id IS NOT NULL AS embedded FROM images i LEFT JOIN embeddings e USING (image_id) "
                       "WHERE i.status = 'ok' AND i.decoder IS DISTINCT FROM 'imported' "
                       "AND i.path IN (SELECT path FROM _listed) ORDER BY i.path").df()
    errors = con.execute("SELECT image_id, path, mtime_ns FROM images WHERE status = 'error' "
                         "AND path IN (SELECT path FROM _listed) ORDER BY path").df()
    con.unregister("_listed")
    retry = unreadable_changed(errors)
    if retry:
        con.register("_retry", pd.DataFrame({"image_id": pd.array(retry, dtype="int64")}))
        con.execute("UPDATE images SET status = 'pending', error = NULL, mtime_ns = NULL "
                    "WHERE image_id IN (SELECT image_id FROM _retry)").fetchall()
        con.unregister("_retry")
        refreshed.retried = errors.loc[errors["image_id"].isin(set(retry)), "path"].map(
            lambda p: p.removeprefix(folder).lstrip("/")).tolist()
    found = compare(rows)
    if found.touched:
        touched = rows[rows["path"].isin(set(found.touched))]
        _, times = file_stamps(touched["path"].tolist())
        con.register("_touched", pd.DataFrame({"image_id": touched["image_id"].astype("int64"),
                                               "mtime_ns": pd.array(times, dtype="Int64")}))
        con.execute("UPDATE images i SET mtime_ns = t.mtime_ns FROM _touched t WHERE i.image_id = t.image_id").fetchall()
        con.unregister("_touched")
    if not found.image_ids:
        return refreshed
    gone = rows[rows["image_id"].isin(set(found.image_ids))]
    drop_derived_rows(con, gone)
    # the embed stage reads them again and records what it finds (an error with its reason, if they cannot be used)
    con.register("_changed", gone[["image_id"]].astype("int64"))
    con.execute("UPDATE images SET status = 'pending', error = NULL, mtime_ns = NULL "
                "WHERE image_id IN (SELECT image_id FROM _changed)").fetchall()
    con.unregister("_changed")
    refreshed.images, refreshed.embedded = len(gone), int(gone["embedded"].sum())
    refreshed.examples = gone["path"].map(lambda p: p.removeprefix(folder).lstrip("/")).tolist()
    _mark_for_rebuild(con)
    refreshed.head_stale = mark_head_stale(con, gone, "were changed on disk since they were embedded")
    return refreshed


def _mark_for_rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """The index and map are up to date by the image ids they hold, which a photo changed in place keeps: their
    records are cleared here so the next index and project stages rebuild them with the new vectors (the head is
    marked stale by snakeweb.removal.mark_head_stale)."""
    for key in ("index", "projection"):
        rows = con.execute("SELECT value FROM run_metadata WHERE key = ?", [key]).fetchall()
        if rows:
            recorded = json.loads(rows[0][0])
            set_meta(con, key, {**recorded, "ids_digest": None})
