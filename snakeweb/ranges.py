"""Range records: a review team's additions to and removals from the shipped species x country table,
kept in the store as an append-only log (reviewer, time, note) and applied over the shipped table
(`effective_prior`). The latest record of a species x country pair wins; nothing in the shipped file changes.
Writes go through the same per-store lock as reviews (DuckDB allows one writer per file)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd

from snakeweb.countries import country_name, resolve_country
from snakeweb.decisions import CountryPrior
from snakeweb.errors import SnakewebError
from snakeweb.review import ensure_table, write_with_retries
from snakeweb.store import Store, StoreBusyError

RANGE_OVERRIDES_TABLE = """
CREATE SEQUENCE IF NOT EXISTS range_override_ids START 1;
CREATE TABLE IF NOT EXISTS range_overrides (
    override_id BIGINT PRIMARY KEY DEFAULT nextval('range_override_ids'),
    class_id BIGINT NOT NULL,
    country_code VARCHAR NOT NULL,
    present BOOLEAN NOT NULL,
    reviewer VARCHAR NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    note VARCHAR
);
"""
LOG_COLUMNS = ["override_id", "class_id", "binomial_name", "country_code", "country", "present", "reviewer", "changed_at", "note"]
CURRENT_COLUMNS = ["class_id", "binomial_name", "country_code", "present"]


def ensure_range_overrides_table(store: Store) -> None:
    """Create the range_overrides table (and its id sequence) once per store and process."""
    ensure_table(store, RANGE_OVERRIDES_TABLE)


def add_range_override(store: Store, class_id: int, country: str, present: bool, reviewer: str, note: str = "",
                       wait_s: float = 60.0) -> None:
    """Log one range record: species `class_id` is (`present`=True) or is not (False) found in `country`.

    `country` is an ISO code or name, read strictly (a CountryError, with the real candidates, for 'ZZ',
    'Korea' or anything that is not exactly one country); `class_id` must be a class of the store's species
    table and `reviewer` non-empty, else a SnakewebError. Raises SnakewebError when the store stays busy.
    """
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise SnakewebError("A range record needs the reviewer's name; give your name and save it again.")
    # a string such as 'no' would be truthy: only a real flag may decide presence
    if not isinstance(present, bool | np.bool_):
        raise SnakewebError(f"A range record's presence must be True or False, not {present!r}; say whether the species is found there.")
    try:
        class_id = int(class_id)
    except (TypeError, ValueError):
        raise SnakewebError(f"Class id {class_id!r} is not a number; pick a species of this store.") from None
    code = resolve_country(country, "range record")
    ensure_range_overrides_table(store)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        if not con.execute("SELECT count(*) FROM species WHERE class_id = ?", [class_id]).fetchall()[0][0]:
            raise SnakewebError(f"Class id {class_id} is not in this store's species table; pick a species of this store.")
        con.execute(
            "INSERT INTO range_overrides (class_id, country_code, present, reviewer, changed_at, note) VALUES (?, ?, ?, ?, ?, ?)",
            [class_id, code, bool(present), reviewer.strip(), datetime.now(UTC).replace(tzinfo=None), note or ""],
        )

    write_with_retries(store, work, "range record", wait_s)


def _read(store: Store, sql: str, columns: list[str]) -> pd.DataFrame:
    """`sql` over range_overrides, or an empty frame with `columns` when no record was ever saved. Read-only:
    looking at the records (each identification does) must not need write access to the store."""
    with store.connect(read_only=True) as con:
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'range_overrides'").fetchall()[0][0]
        if not exists:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return con.execute(sql).df()


def range_override_log(store: Store) -> pd.DataFrame:
    """Every range record, newest first: override_id, class_id, binomial_name, country_code, country (its
    name), present, reviewer, changed_at (UTC), note."""
    log = _read(store, "SELECT r.override_id, r.class_id, s.binomial_name, r.country_code, r.present, r.reviewer, r.changed_at, r.note "
                       "FROM range_overrides r LEFT JOIN species s USING (class_id) ORDER BY r.override_id DESC",
               [c for c in LOG_COLUMNS if c != "country"])
    log.insert(4, "country", [country_name(c) for c in log["country_code"]])
    return log[LOG_COLUMNS]


def current_range_overrides(store: Store) -> pd.DataFrame:
    """The record in effect per species x country pair (the latest): class_id, binomial_name, country_code,
    present; sorted by species and country."""
    return _read(store, "SELECT r.class_id, s.binomial_name, r.country_code, r.present FROM range_overrides r "
                        "LEFT JOIN species s USING (class_id) "
                        "QUALIFY row_number() OVER (PARTITION BY r.class_id, r.country_code ORDER BY r.override_id DESC) = 1 "
                        "ORDER BY s.binomial_name, r.country_code", CURRENT_COLUMNS)


def overrides_version(store: Store) -> int:
    """The newest record's id, 0 when there is none: it grows with every saved record, so a process holding
    a prior re-reads the records only when this changes."""
    frame = _read(store, "SELECT COALESCE(max(override_id), 0) AS version FROM range_overrides", ["version"])
    return int(frame["version"].iloc[0]) if len(frame) else 0


def effective_prior(store: Store, base: CountryPrior | None) -> CountryPrior | None:
    """`base` (the shipped table, or None) with the store's current range records applied: a new prior, the
    records alone when there is no base, `base` itself when the store has no records."""
    overrides = current_range_overrides(store)
    if overrides.empty:
        return base
    return CountryPrior.from_overrides(overrides) if base is None else base.with_overrides(overrides)


class LivePrior:
    """A prior that follows the store's range records: `current()` re-reads them only when
    `overrides_version` changed since the last call, and keeps the last prior while the store is busy
    (a rebuild holding the file must not stop identification). Thread-safe."""

    def __init__(self, store: Store, base: CountryPrior | None):
        self.store, self.base = store, base
        self._version: int | None = None
        self._prior = base
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """The `overrides_version` of the records in effect (0 before the first read or without records)."""
        return self._version or 0

    def current(self) -> CountryPrior | None:
        """The base prior with the records in effect now (see `effective_prior`); None when there is neither."""
        with self._lock:
            try:
                version = overrides_version(self.store)
                if version != self._version:
                    self._prior, self._version = effective_prior(self.store, self.base), version
            # another process or dashboard session held the file past Store.connect's wait: the records read last
            # time stay in effect until the store can be read again
            except StoreBusyError:
                pass
            return self._prior
