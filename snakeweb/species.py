"""The species table and the class-id <-> head-index mapping: the one source of truth for both.

SnakeCLEF class ids are not contiguous (1,784 ids, gaps where names are missing) and a store may hold any
subset of them. A head's outputs are contiguous 0..K-1, so every head carries a `LabelMap`, and every
conversion between the two goes through it. Writing head indices out as class ids (the seed paper's bug)
cannot happen because predictions only leave a head through `LabelMap.to_class_ids`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.tables import read_user_csv

log = logging.getLogger(__name__)

SPECIES_COLUMNS = ["class_id", "binomial_name", "genus", "venomous"]
PLACEHOLDER_PREFIX = "class "  # the name of a class whose binomial name no table gives


def with_names_from(table: pd.DataFrame, named: pd.DataFrame) -> pd.DataFrame:
    """`table` plus the rows of `named` it lacks; placeholder names in `table` are filled from `named`
    (e.g. a venomous list without names, completed by the names in SnakeCLEF metadata)."""
    merged = table.set_index("class_id").copy()
    other = named.set_index("class_id")
    fill = merged["binomial_name"].str.startswith(PLACEHOLDER_PREFIX) & merged.index.isin(other.index)
    merged.loc[fill, "binomial_name"] = other.loc[merged.index[fill], "binomial_name"]
    merged.loc[fill, "genus"] = other.loc[merged.index[fill], "genus"]
    extra = other[~other.index.isin(merged.index)]
    return pd.concat([merged, extra]).reset_index()[SPECIES_COLUMNS].sort_values("class_id").reset_index(drop=True)


def normalise_name(name: str) -> str:
    """'natrix_natrix ' -> 'Natrix natrix': folder names use '_' or spaces and any case."""
    words = re.sub(r"[_\s]+", " ", name).strip().split(" ")
    if not words or not words[0]:
        return ""
    return " ".join([words[0].capitalize(), *(w.lower() for w in words[1:])])


def read_species_table(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Merge one or more species CSVs on class_id into columns class_id, binomial_name, genus, venomous.

    Names come from any file with `binomial_name`; the venomous flag from `venomous` or SnakeCLEF's `MIVS`
    (1 = medically important venomous species). `class_list.csv` alone, or `class_list.csv` plus
    `venomous_status_list.csv`, are both complete tables.
    """
    merged: pd.DataFrame | None = None
    for path in paths:
        frame = read_user_csv(path, "species table (a CSV with a class_id column)")
        if "class_id" not in frame.columns:
            raise SnakewebError(f"Species table {path} has no class_id column; its columns are {list(frame.columns)}.")
        if "MIVS" in frame.columns and "venomous" not in frame.columns:
            frame = frame.rename(columns={"MIVS": "venomous"})
        keep = [c for c in ("class_id", "binomial_name", "genus", "venomous") if c in frame.columns]
        frame = frame[keep].drop_duplicates("class_id")
        if merged is None:
            merged = frame
        else:
            overlap = [c for c in keep if c != "class_id" and c in merged.columns]
            merged = merged.merge(frame, on="class_id", how="outer", suffixes=("", "_new"))
            for column in overlap:
                merged[column] = merged[column].fillna(merged.pop(f"{column}_new"))
    if merged is None:
        raise SnakewebError("No species table was given.")
    return _complete(merged)


def _complete(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if pd.to_numeric(frame["class_id"], errors="coerce").isna().any():
        raise SnakewebError("The species table has class ids that are not integers; fix or remove those rows.")
    frame["class_id"] = frame["class_id"].astype("int64")
    if "binomial_name" not in frame.columns:
        frame["binomial_name"] = None
    names = frame["binomial_name"].map(lambda n: normalise_name(n) if isinstance(n, str) else "")
    # 19 SnakeCLEF classes have no known name; they keep a readable placeholder rather than a blank.
    frame["binomial_name"] = names.where(names != "", PLACEHOLDER_PREFIX + frame["class_id"].astype(str))
    if "genus" not in frame.columns:
        frame["genus"] = None
    frame["genus"] = frame["genus"].fillna(frame["binomial_name"].str.split(" ").str[0])
    if "venomous" not in frame.columns:
        frame["venomous"] = False
    frame["venomous"] = frame["venomous"].fillna(0).astype(int).astype(bool)
    return frame[SPECIES_COLUMNS].sort_values("class_id").reset_index(drop=True)


def species_for_names(names: Iterable[str], table: pd.DataFrame | None) -> pd.DataFrame:
    """Species rows for folder names: table ids where the name is known, new ids above the table otherwise.

    New ids are given in sorted-name order, so the same folders always get the same ids.
    """
    wanted = sorted({normalise_name(n) for n in names if normalise_name(n)})
    if table is None or table.empty:
        rows = [{"class_id": i, "binomial_name": n, "genus": n.split(" ")[0], "venomous": False} for i, n in enumerate(wanted)]
        return pd.DataFrame(rows, columns=SPECIES_COLUMNS)
    by_name = table.drop_duplicates("binomial_name").set_index("binomial_name")
    next_id = int(table["class_id"].max()) + 1
    rows, unknown = [], []
    for name in wanted:
        if name in by_name.index:
            row = by_name.loc[name]
            rows.append({"class_id": int(row["class_id"]), "binomial_name": name, "genus": row["genus"], "venomous": bool(row["venomous"])})
        else:
            unknown.append(name)
            rows.append({"class_id": next_id, "binomial_name": name, "genus": name.split(" ")[0], "venomous": False})
            next_id += 1
    if unknown:
        log.warning(
            "%d folder name(s) are not in the species table and got new class ids above it (venomous unknown, "
            "treated as harmless): %s", len(unknown), ", ".join(unknown[:10]),
        )
    return pd.DataFrame(rows, columns=SPECIES_COLUMNS)


def venomous_class_ids(species: pd.DataFrame) -> set[int]:
    """The venomous class ids of a species table (indexed by class_id)."""
    return set(species.index[species["venomous"].astype(bool)].astype(int))


def venomous_mask(species: pd.DataFrame, class_ids: Sequence[int]) -> np.ndarray:
    """Venomous flag per class id (species indexed by class_id); ids missing from the table are harmless."""
    flags = species["venomous"].astype(bool)
    return np.array([bool(flags.get(int(c), False)) for c in class_ids])


@dataclass(frozen=True)
class LabelMap:
    """Class ids (any integers, sorted) <-> head output indices 0..K-1."""

    class_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if list(self.class_ids) != sorted(set(self.class_ids)):
            raise ValueError("LabelMap class ids must be unique and sorted")

    @classmethod
    def from_labels(cls, class_ids: Iterable[int]) -> LabelMap:
        return cls(tuple(sorted({int(c) for c in class_ids})))

    def __len__(self) -> int:
        return len(self.class_ids)

    def to_indices(self, class_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Head indices of class ids; an id the head was not trained on is an error, never a silent guess."""
        lookup = np.asarray(self.class_ids, dtype=np.int64)
        ids = np.asarray(class_ids, dtype=np.int64)
        positions = np.searchsorted(lookup, ids)
        positions = np.clip(positions, 0, len(lookup) - 1)
        bad = lookup[positions] != ids
        if bad.any():
            raise KeyError(f"class ids not in this label map: {sorted(set(ids[bad].tolist()))[:10]}")
        return positions.astype(np.int64)

    def to_class_ids(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Class ids of head output indices."""
        return np.asarray(self.class_ids, dtype=np.int64)[np.asarray(indices, dtype=np.int64)]

    def to_json(self) -> list[int]:
        return list(self.class_ids)

    @classmethod
    def from_json(cls, data: Sequence[int]) -> LabelMap:
        return cls(tuple(int(c) for c in data))
