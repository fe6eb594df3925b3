"""A store whose DuckDB file lacks one of its tables (dropped by hand, or by another tool): readers say which and the
command that makes it again (`StoreTablesMissingError`; `check` as a failed "store file" verdict), and every building
command makes it again, empty, when it opens the store for writing, and forgets that the stage that filled it was
done, so that stage fills it again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import duckdb

from snakeweb.errors import SnakewebError, shell_word

if TYPE_CHECKING:
    from snakeweb.store import Store

# the tables snakeweb.store.SCHEMA makes, and the stage that fills each
SCHEMA_TABLES = {"species": "ingest", "observations": "ingest", "images": "ingest", "embeddings": "embed",
                 "view_embeddings": "embed", "predictions": "predict", "projection": "project", "run_metadata": "ingest"}
# the tables a stage makes (missing only once that stage has run: run metadata 'predictions')
STAGE_TABLES = {"answers": "predict"}
# a table made again empty: the run metadata that said its stage was done, forgotten so the stage runs again
_DONE_RECORDS = {"predictions": "predictions", "answers": "predictions", "projection": "projection"}
_STAGE_ORDER = ("ingest", "embed", "predict", "project")


class StoreTablesMissingError(SnakewebError):
    """The store's DuckDB file lacks tables the store has; the sentence names them and the command that makes them."""


def missing_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables of the schema (and `answers`, once predict has run) that the open file lacks."""
    present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    predicted = "run_metadata" in present and con.execute(
        "SELECT count(*) FROM run_metadata WHERE key = 'predictions'").fetchone()[0] > 0
    wanted = list(SCHEMA_TABLES) + (list(STAGE_TABLES) if predicted else [])
    return [table for table in wanted if table not in present]


def missing_tables_sentence(store: Store, missing: list[str]) -> str:
    """Which tables are missing, and the build (or the stages) that makes them again."""
    stages = sorted({SCHEMA_TABLES.get(t) or STAGE_TABLES[t] for t in missing}, key=_STAGE_ORDER.index)
    word = shell_word(store.root)
    build = f"`python -m pipelines build --store {word} --images DIR`"
    if "ingest" in stages:  # the photos' own rows: only an ingest of their folder gives them again
        remake = f"{build} (DIR the folder its photos came from)"
    else:
        remake = " then ".join(f"`python -m pipelines {stage} --store {word}`" for stage in stages) + f" (or {build})"
    plural = len(missing) > 1
    return (f"The store {store.root} lacks the table{'s' if plural else ''} {', '.join(missing)} (dropped from its "
            f"database file); {remake} makes {'them' if plural else 'it'} again.")


def refuse_missing_tables(store: Store, tables: Iterable[str] | None = None) -> None:
    """Raises StoreTablesMissingError when the store lacks one of `tables` (default: any of its tables)."""
    with store.connect(read_only=True) as con:
        missing = missing_tables(con)
    if tables is not None:
        missing = [t for t in missing if t in set(tables)]
    if missing:
        raise StoreTablesMissingError(missing_tables_sentence(store, missing))


def restore_tables(con: duckdb.DuckDBPyConnection, missing: list[str]) -> None:
    """Make the `missing` tables again, empty, and forget that the stages that filled them were done: predict and
    project fill theirs again, and embed the photos whose vectors were lost (the index and head follow)."""
    from snakeweb.store import SCHEMA, migrate

    con.execute(SCHEMA)
    if "run_metadata" in missing:
        migrate(con)  # the store id
    for table in missing:
        if table in _DONE_RECORDS:
            con.execute("DELETE FROM run_metadata WHERE key = ?", [_DONE_RECORDS[table]])
    if "embeddings" in missing:
        con.execute("UPDATE images SET status = 'pending' WHERE status = 'ok' "
                    "AND image_id NOT IN (SELECT image_id FROM embeddings)")
