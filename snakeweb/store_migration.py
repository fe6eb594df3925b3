"""Bringing a store file made by an earlier snakeweb up to this version's schema (columns added, a venom flag made a
venom status, a store id given once). Run by snakeweb.store when a store opens for writing, and by `check`."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from snakeweb.store import Store


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The column names of one table."""
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}


def needs_migration(store: Store) -> bool:
    """Whether the store file was made by an earlier snakeweb and `migrate` has work to do."""
    with store.connect(read_only=True) as con:
        species = _columns(con, "species")
        return ("venomous" in species or "family" not in species or "subspecies" not in _columns(con, "observations")
                or "mtime_ns" not in _columns(con, "images")
                or not con.execute("SELECT count(*) FROM run_metadata WHERE key = 'store_id'").fetchone()[0])


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a store made by an earlier snakeweb up to this schema: a boolean venom flag becomes a venom
    status (its False could not tell harmless from unknown, so those classes keep 'harmless' as recorded;
    rebuild with a species table to get 'unknown' where it applies), observations gain `subspecies`, and
    species gain `family` (NULL, read as "unknown" until an ingest with a taxonomy table fills it), images gain
    `decoder` (NULL until embedded again) and `mtime_ns` (NULL: not compared with its file); every store gets a
    `store_id` (run metadata) once."""
    # a store's identity for provenance: answers and reviews say which store made them, wherever it is moved
    con.execute("INSERT INTO run_metadata VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING", [json.dumps(uuid.uuid4().hex)])
    if "venomous" in _columns(con, "species"):
        con.execute("ALTER TABLE species ADD COLUMN venom_status VARCHAR")
        con.execute("UPDATE species SET venom_status = CASE WHEN venomous THEN 'venomous' ELSE 'harmless' END")
        con.execute("ALTER TABLE species DROP COLUMN venomous")
    if "subspecies" not in _columns(con, "observations"):
        con.execute("ALTER TABLE observations ADD COLUMN subspecies VARCHAR")
    if "family" not in _columns(con, "species"):
        con.execute("ALTER TABLE species ADD COLUMN family VARCHAR")
    if "decoder" not in _columns(con, "images"):
        con.execute("ALTER TABLE images ADD COLUMN decoder VARCHAR")
    if "mtime_ns" not in _columns(con, "images"):
        con.execute("ALTER TABLE images ADD COLUMN mtime_ns BIGINT")
