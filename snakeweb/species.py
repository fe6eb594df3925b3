"""The species table and the class-id <-> head-index mapping: the one source of truth for both.

SnakeCLEF class ids are not contiguous (1,784 ids, gaps where names are missing) and a store may hold any
subset of them. A head's outputs are contiguous 0..K-1, so every head carries a `LabelMap`, and every
conversion between the two goes through it. Writing head indices out as class ids (the seed paper's bug)
cannot happen because predictions only leave a head through `LabelMap.to_class_ids`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.tables import Column, read_table

log = logging.getLogger(__name__)

SPECIES_COLUMNS = ["class_id", "binomial_name", "genus", "venom_status"]
PLACEHOLDER_PREFIX = "class "  # the name of a class whose binomial name no table gives
ASSIGNED_IDS = "assigned_class_ids"  # run-metadata key (and DataFrame attr): class ids snakeweb numbered itself
# Venom status of a species. "unknown" (a name no table knows, a table without a venom column, an empty
# cell) is never harmless: the venom-aware rule treats it as possibly venomous and every output shows it.
VENOMOUS, HARMLESS, UNKNOWN = "venomous", "harmless", "unknown"
VENOM_STATUSES = (VENOMOUS, HARMLESS, UNKNOWN)
SPECIES_TABLE_COLUMNS = (
    Column("class_id", ("classid",), required=True),
    Column("binomial_name", ("species", "binomial", "scientific_name", "species_name", "latin_name", "taxon", "name")),
    Column("genus"),
    Column("venomous", ("MIVS", "is_venomous", "venom", "venom_status", "medically_important")),
)


def taxon_key(name: str) -> str:
    """How taxon names are compared: 'Crotalus_ATROX (Western diamondback)' -> 'crotalus atrox'. Case,
    underscores, hyphens, repeated spaces, trailing parentheticals (common names, notes), an author citation
    ('Crotalus atrox Baird & Girard, 1853') and the rank words subsp./ssp./var. do not count."""
    text = str(name)
    while re.search(r"\([^()]*\)\s*$", text):
        text = re.sub(r"\s*\([^()]*\)\s*$", "", text)
    words = re.sub(r"[_\-\s]+", " ", text).strip().split(" ")
    if not text.isupper():  # in 'CROTALUS ATROX' every word is capitalised: no author to find
        # an author citation starts at the first word after the binomial that is capitalised or is not a word
        # (the epithet itself may be capitalised: folders are often named 'Crotalus Atrox')
        cut = next((i for i, w in enumerate(words[2:], 2) if w[:1].isupper() or not w.replace(".", "").isalpha()), len(words))
        words = words[:cut]
    words = [w for w in words if w.lower() not in ("subsp.", "ssp.", "subsp", "ssp", "var.", "var")]
    return " ".join(w.lower() for w in words if w)


def normalise_name(name: str) -> str:
    """'natrix_natrix ' -> 'Natrix natrix': the display form of a taxon name (genus capitalised)."""
    words = taxon_key(name).split(" ")
    if not words or not words[0]:
        return ""
    return " ".join([words[0].capitalize(), *words[1:]])


def is_trinomial(key: str) -> bool:
    """'natrix natrix helvetica' (a taxon_key of three plain words) names a subspecies."""
    words = key.split(" ")
    return len(words) == 3 and all(w.isalpha() for w in words)


def species_name(name: str) -> str:
    """The display name of the species a name belongs to: a subspecies' species, else the name itself."""
    key = taxon_key(name)
    return normalise_name(" ".join(key.split(" ")[:2]) if is_trinomial(key) else key)


def status_of_flag(flag: object) -> str:
    """True / False / None (as `Table.flags` reads them) -> venomous / harmless / unknown."""
    return UNKNOWN if flag is None or pd.isna(flag) else VENOMOUS if bool(flag) else HARMLESS


def read_species_table(paths: Sequence[str | Path], known: pd.DataFrame | None = None) -> pd.DataFrame:
    """Merge one or more species tables on class_id into columns class_id, binomial_name, genus, venom_status.

    Each file is read by `snakeweb.tables.read_table` (headers, delimiters, encodings and flag spellings as
    documented in the README); names come from any file with a binomial_name column (or an alias), the venom
    flag from `venomous` or SnakeCLEF's `MIVS` (1 = medically important venomous species). A class no file
    gives a flag for has venom status "unknown". A table without class ids (names and flags only) takes the
    ids the other tables give those names, and new ids above them for the rest. Two files that disagree about
    a class's name or flag, one name under two class ids, a class id that is not a whole number, or a flag
    snakeweb cannot read raise a SnakewebError. `class_list.csv` alone, or `class_list.csv` plus
    `venomous_status_list.csv`, are both complete tables.

    `known` (a store's species table) takes part as the first table: names-only tables take its ids, and a
    file that contradicts it is refused; the result then includes its classes.
    """
    tables = [_read_one(path) for path in paths]
    if not tables:
        raise SnakewebError("No species table was given.")
    merged = _from_store(known)
    for frame in sorted(tables, key=lambda f: f["class_id"].isna().all()):  # tables with ids first
        if frame["class_id"].isna().all():
            frame = _ids_by_name(frame, merged)
        merged = frame if merged is None else _merge_tables(merged, frame)
    return _finish(merged)


def combine_with_store(known: pd.DataFrame | None, table: pd.DataFrame | None) -> pd.DataFrame | None:
    """A store's species plus a species table for one more ingest: the table fills unknown venom statuses and
    placeholder names, and anything else it says differently (a class's flag or name, a species under another
    class id) is refused, since a store cannot change what its classes mean. None when both are empty."""
    if table is None or table.empty:
        return known if known is not None and not known.empty else None
    if known is None or known.empty:
        return table
    return _merge_species(known, table, "this store", "the species table")


def _merge_species(base: pd.DataFrame, incoming: pd.DataFrame, base_source: str, incoming_source: str) -> pd.DataFrame:
    """Two species tables (SPECIES_COLUMNS) as one: each fills the other's unknown flags and placeholder names,
    and a class they describe differently, or a species under two class ids, is refused naming both sources."""
    result = _finish(_merge_tables(_fillable(base, base_source), _fillable(incoming, incoming_source)))
    result.attrs[ASSIGNED_IDS] = incoming.attrs.get(ASSIGNED_IDS, [])
    return result


def _fillable(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """A species table as merge input: placeholder names (and their genus) become gaps another table may fill."""
    frame = frame[SPECIES_COLUMNS].copy()
    placeholder = frame["binomial_name"].astype(str).str.startswith(PLACEHOLDER_PREFIX)
    frame.loc[placeholder, ["binomial_name", "genus"]] = None
    return frame.assign(source=source)


def _from_store(known: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if known is None or known.empty else _fillable(known, "this store")


def _finish(merged: pd.DataFrame) -> pd.DataFrame:
    one_class_per_name(merged)
    assigned = merged.loc[merged["assigned"].fillna(False).astype(bool), "class_id"] if "assigned" in merged else []
    table = _complete(merged)
    table.attrs[ASSIGNED_IDS] = sorted(int(c) for c in assigned)  # ids snakeweb numbered (no table gave them)
    return table


def _read_one(path: str | Path) -> pd.DataFrame:
    table = read_table(path, "species table", SPECIES_TABLE_COLUMNS[1:] + (Column("class_id", ("classid",)),))
    if not len(table):
        raise table.fail("it has a header but no rows.")
    if not table.has("class_id") and not table.has("binomial_name"):
        raise table.fail(f"it has neither a class_id nor a binomial_name column; its columns are {list(table.headers.values())}.")
    if not table.has("class_id"):
        # names only: snakeweb would number the classes itself, so a column that looks like ids must not be passed over
        known = {c.name for c in SPECIES_TABLE_COLUMNS}
        for column in (c for c in table.frame.columns if c not in known):
            values = table.frame[column][table.frame[column] != ""]
            if len(values) and values.str.fullmatch(r"\d+(?:[.,]0*)?").all():
                raise table.fail(f"its column {table.headers[column]!r} holds whole numbers but snakeweb reads class ids only "
                                 "from a column named class_id; rename it (or remove it if it is not a class id).")
    if not table.has("venomous"):
        venomish = [h for h in table.headers.values() if re.search(r"venom|venim|venen|mivs|toxic|poison|danger|giftig|fang", h, re.I)]
        if venomish:
            raise table.fail(f"its column {venomish[0]!r} looks like a venom flag but is not one snakeweb reads; "
                             "name it venomous or MIVS.")
        log.warning("The species table %s has no venomous or MIVS column: its %d species have venom status unknown "
                    "(treated as possibly venomous).", path, len(table))
    frame = pd.DataFrame({"class_id": table.ids("class_id") if table.has("class_id") else pd.array([None] * len(table), "Int64")})
    # a subspecies row is a row of its species (classes are species; a trinomial with its own class and flag
    # would let a harmless 'Crotalus atrox atrox' stand beside the venomous species)
    frame["binomial_name"] = table.taxon_names("binomial_name").map(lambda n: species_name(n) if n else None) \
        if table.has("binomial_name") else None
    frame["genus"] = table.taxon_names("genus") if table.has("genus") else None
    frame["venom_status"] = table.flags("venomous").map(status_of_flag) if table.has("venomous") else None
    frame["source"] = str(path)
    if not table.has("class_id"):
        if frame["binomial_name"].isna().any():
            raise table.fail(f"{int(frame['binomial_name'].isna().sum())} row(s) have neither a class id nor a name.")
        return frame
    return _one_row_per_class(frame, table)


def _ids_by_name(frame: pd.DataFrame, known: pd.DataFrame | None) -> pd.DataFrame:
    """Class ids for a table of names only: the id another table gives the name, else a new one above them."""
    frame = frame.drop_duplicates()
    by_key = {} if known is None else {taxon_key(n): int(c) for n, c in zip(known["binomial_name"], known["class_id"])
                                        if isinstance(n, str)}
    first_new = next_id = 0 if known is None or known.empty else int(known["class_id"].max()) + 1
    ids = []
    for name in frame["binomial_name"]:
        if taxon_key(name) not in by_key:
            by_key[taxon_key(name)] = next_id
            next_id += 1
        ids.append(by_key[taxon_key(name)])
    frame = frame.assign(class_id=pd.array(ids, dtype="Int64"), assigned=[c >= first_new for c in ids])
    repeated = frame["class_id"].duplicated(keep=False)
    if repeated.any():
        name = frame.loc[repeated, "binomial_name"].iloc[0]
        raise SnakewebError(f"The species table {frame['source'].iloc[0]} lists {name} in rows that disagree; keep one row per species.")
    return frame


def one_class_per_name(merged: pd.DataFrame) -> None:
    """One species, one class id: a name under two ids would let whichever comes last (and its venom flag) win."""
    named = merged[merged["binomial_name"].notna()]
    keys = named["binomial_name"].map(taxon_key)
    repeated = keys.duplicated(keep=False)
    if repeated.any():
        rows = named[repeated & (keys == keys[repeated].iloc[0])]
        places = ", ".join(f"class {int(c)} ({status or 'no flag'}, {source})"
                           for c, status, source in zip(rows["class_id"], rows["venom_status"], rows["source"]))
        raise SnakewebError(f"The species tables give {rows['binomial_name'].iloc[0]} more than one class id: {places} "
                            f"({int(keys[repeated].nunique())} name(s) repeat); keep one class id per species (a store "
                            "cannot change a species' class id: build a new store to use another table's ids).")


def _one_row_per_class(frame: pd.DataFrame, table) -> pd.DataFrame:
    """Drop exact repeats of a class's row; two different rows for one class id are refused."""
    values = frame[["class_id", "binomial_name", "venom_status"]].astype(str)
    frame = frame[~values.duplicated()]
    repeated = frame["class_id"].duplicated(keep=False)
    if repeated.any():
        ids = sorted(set(frame.loc[repeated, "class_id"].astype(int)))
        raise table.fail(f"class id(s) {', '.join(map(str, ids[:5]))} appear in rows that disagree; keep one row per class id.")
    return frame


def _merge_tables(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """Outer join on class_id; a value one file gives fills the other's gap, and two different values stop."""
    merged = left.merge(right, on="class_id", how="outer", suffixes=("", "_other"))
    for column in ("binomial_name", "genus", "venom_status"):
        mine, theirs = merged[column], merged.pop(f"{column}_other")
        if column != "genus":
            known = mine.notna() & theirs.notna() & (mine != UNKNOWN) & (theirs != UNKNOWN)
            clash = known & (mine.map(lambda v: taxon_key(str(v))) != theirs.map(lambda v: taxon_key(str(v))))
            if clash.any():
                row = merged[clash].iloc[0]
                raise SnakewebError(
                    f"The species tables disagree about class {int(row['class_id'])}: {row['source']} gives {column} "
                    f"{mine[clash].iloc[0]!r}, {merged.loc[clash, 'source_other'].iloc[0]} gives {theirs[clash].iloc[0]!r} "
                    f"({int(clash.sum())} class(es) differ); correct one of the files."
                )
        fill = mine.isna() | ((mine == UNKNOWN) & theirs.notna())
        merged[column] = mine.where(~fill, theirs)
    merged["source"] = merged["source"].fillna(merged.pop("source_other"))
    return merged


def _complete(frame: pd.DataFrame) -> pd.DataFrame:
    """Placeholder names, genus from the binomial, "unknown" venom status where no file says."""
    frame = frame.copy()
    frame["class_id"] = frame["class_id"].astype("int64")
    names = frame["binomial_name"].map(lambda n: n if isinstance(n, str) and n else "")
    # 19 SnakeCLEF classes have no known name; they keep a readable placeholder rather than a blank.
    frame["binomial_name"] = names.where(names != "", PLACEHOLDER_PREFIX + frame["class_id"].astype(str))
    genus = frame["genus"].map(lambda g: g if isinstance(g, str) and g else None)
    from_name = frame["binomial_name"].str.split(" ").str[0].where(names != "", None)  # a placeholder has no genus
    frame["genus"] = genus.fillna(from_name)
    frame["venom_status"] = frame["venom_status"].map(lambda s: s if s in VENOM_STATUSES else UNKNOWN)
    return frame[SPECIES_COLUMNS].sort_values("class_id").reset_index(drop=True)


def with_names_from(table: pd.DataFrame, named: pd.DataFrame) -> pd.DataFrame:
    """`table` plus the classes of `named` (class_id, binomial_name from metadata) it lacks, with venom status
    unknown; placeholder names in `table` are filled from `named` (e.g. a venomous list without names, completed
    by SnakeCLEF metadata's names). A class both name differently, or a species under two ids, is refused."""
    extra = named[~named["class_id"].isin(table["class_id"])]
    if len(extra):
        log.warning("%d class id(s) in the metadata are not in the species table; their venom status is unknown "
                    "(treated as possibly venomous): %s", len(extra),
                    ", ".join(f"{n} ({c})" for c, n in zip(extra["class_id"][:5], extra["binomial_name"][:5])))
    return _merge_species(table, named.assign(venom_status=UNKNOWN), "the species table", "the metadata")


def possibly_venomous_class_ids(species: pd.DataFrame) -> set[int]:
    """Class ids (species indexed by class_id) whose venom status is venomous or unknown: what the venom-aware
    rule, the venom weight and evaluation count as venomous (unknown is never harmless)."""
    return set(species.index[species["venom_status"] != HARMLESS].astype(int))


def possibly_venomous_mask(species: pd.DataFrame, class_ids: Sequence[int]) -> np.ndarray:
    """Per class id: venomous or unknown (species indexed by class_id). An id missing from the table is
    unknown, so it counts as possibly venomous."""
    status = species["venom_status"]
    return np.array([status.get(int(c), UNKNOWN) != HARMLESS for c in class_ids])


def venom_status_of(species: pd.DataFrame, class_id: int) -> str:
    """venomous / harmless / unknown of one class (species indexed by class_id; absent = unknown)."""
    return str(species["venom_status"].get(int(class_id), UNKNOWN))
