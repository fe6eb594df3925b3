"""Train / validation / test splits, always by observation (the photos of one animal stay together): the
metadata's official subsets when it has both train and validation rows, else snakeweb's own deterministic split,
stratified by species. Used by ingest and import-embeddings alike."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.store import set_meta

if TYPE_CHECKING:
    import duckdb

    from snakeweb.tables import Table

log = logging.getLogger(__name__)
TRAIN_SUBSETS = {"train", "train-hm", "train-in", "training"}
VAL_SUBSETS = {"val", "valid", "validation"}
TEST_SUBSETS = {"test", "testing"}


def split_of(subset: object) -> str | None:
    """The split a metadata subset names ('train-hm' -> 'train', 'validation' -> 'val'), None for no subset."""
    value = subset.lower() if isinstance(subset, str) else None
    return "train" if value in TRAIN_SUBSETS else "val" if value in VAL_SUBSETS else "test" if value in TEST_SUBSETS else None


def _rank_key(observation_id: str) -> str:
    return hashlib.sha1(observation_id.encode()).hexdigest()


def assign_splits(observations: pd.DataFrame, val_share: float = 0.15, test_share: float = 0.15) -> pd.Series:
    """Deterministic stratified train/val/test split by observation (never by image, so the photos of one
    animal stay together). Classes with fewer than 3 observations are kept whole for training. Observations that
    already have a split (a `split` column of train, val or test: a store ingested before) keep it and count
    toward their class's shares; the others fill test, then val, up to those shares, then train, in the order of
    the sha1 of their observation id. On a first ingest this is the plain stratified split; on a later one no
    photo moves (re-splitting moved trained-on photos into test and test photos into training)."""
    split = pd.Series("unlabelled", index=observations.index, dtype=object)
    kept = observations["split"] if "split" in observations else pd.Series(None, index=observations.index, dtype=object)
    labelled = observations[observations["class_id"].notna()]
    for _, group in labelled.groupby("class_id"):
        n = len(group)
        n_test = max(int(round(n * test_share)), 1) if n >= 3 else 0
        n_val = max(int(round(n * val_share)), 1) if n >= 3 else 0
        placed = kept[group.index].where(kept[group.index].isin(["train", "val", "test"]))
        split[placed.dropna().index] = placed.dropna()
        counts = placed.value_counts()
        free = {"test": n_test - counts.get("test", 0), "val": n_val - counts.get("val", 0)}
        for i in sorted(placed.index[placed.isna()], key=lambda i: _rank_key(str(group.at[i, "observation_id"]))):
            chosen = next((name for name in ("test", "val") if free[name] > 0), "train")
            free[chosen] = free.get(chosen, 0) - 1
            split[i] = chosen
    return split


def read_subsets(table: Table) -> pd.Series:
    """The metadata's subset column, lower-cased; a value that is no known subset is refused (it would leave
    its photos in no split, silently unused)."""
    values = table.text("subset").str.lower()
    bad = values.notna() & ~values.isin(TRAIN_SUBSETS | VAL_SUBSETS | TEST_SUBSETS)
    if bad.any():
        accepted = ", ".join(sorted(TRAIN_SUBSETS | VAL_SUBSETS | TEST_SUBSETS))
        raise table.fail(f"{int(bad.sum())} row(s) have a subset snakeweb does not know ({table.where(bad.to_numpy(), 'subset')}); "
                         f"use one of {accepted}, or leave it empty.")
    return values


def update_splits(con: duckdb.DuckDBPyConnection, subsets: dict[str, object]) -> None:
    """Official subsets when the first metadata has both train and validation rows; else our stratified split
    (`assign_splits`). Nothing stored moves (re-splitting moved test photos into training): a store split by
    official subsets (run metadata `split_source`) gives new observations their subset, and trains on those without
    one; a store snakeweb split gives new observations the subsets of metadata with train and validation rows and
    fills its shares with the others. A new photo giving a stored observation another subset is refused."""
    observations = con.execute("SELECT observation_id, class_id, split FROM observations").df()
    known_subsets = {str(s).lower() for s in subsets.values() if isinstance(s, str)}
    recorded = con.execute("SELECT value FROM run_metadata WHERE key = 'split_source'").fetchall()
    official_before = bool(recorded) and json.loads(recorded[0][0]) == "metadata subsets"
    placed = observations["split"].isin(["train", "val", "test"])
    whole = bool(known_subsets & TRAIN_SUBSETS and known_subsets & VAL_SUBSETS)  # subsets that can be a split
    split_by_snakeweb = bool(recorded) and not official_before and bool(placed.any())
    given = observations["observation_id"].map(lambda o: split_of(subsets.get(o)))  # the split each subset names
    if official_before or (whole and not split_by_snakeweb):
        set_meta(con, "split_source", "metadata subsets")
        _refuse_moves(observations[placed], given[placed])
        labelled = observations["class_id"].notna()
        no_subset = int((labelled & ~placed & given.isna()).sum())
        if no_subset:  # an observation photos were already stored for keeps its split; a new one without a subset trains
            log.warning("%d new observation(s) have no subset in a store split by the metadata's subsets; they are trained on "
                        "(give them a subset to hold them out).", no_subset)
        unlabelled_in_a_split = int((~labelled & given.notna()).sum())
        if unlabelled_in_a_split:
            log.warning("%d observation(s) have a train, validation or test subset but no class_id; they are stored as "
                        "unlabelled (give their class_id to use them).", unlabelled_in_a_split)
        observations["split"] = observations["split"].where(placed, given.fillna("train"))
        observations.loc[~labelled, "split"] = "unlabelled"
    else:
        if whole:  # a store snakeweb split: the new observations' subsets are used, those without one fill the shares
            _refuse_moves(observations[placed], given[placed])
            observations["split"] = observations["split"].where(placed | given.isna(), given)
            log.warning("%d new observation(s) take the subsets given; this store was split by snakeweb, so new observations "
                        "without a subset fill each species' test and validation shares.", int((~placed & given.notna()).sum()))
        elif known_subsets:
            log.warning("The subsets given (%s) lack a train or a validation subset, so they are not used: snakeweb makes its "
                        "own stratified train/val/test split of the new observations instead (photos already in the store keep "
                        "their split).", ", ".join(sorted(known_subsets)))
        observations["split"] = assign_splits(observations)
        set_meta(con, "split_source", "snakeweb (stratified by species, sha1 of the observation id)")
    con.register("splits", observations[["observation_id", "split"]])
    con.execute("UPDATE observations o SET split = s.split FROM splits s WHERE o.observation_id = s.observation_id")
    con.execute("UPDATE images i SET split = o.split FROM observations o WHERE i.observation_id = o.observation_id")


def _refuse_moves(stored: pd.DataFrame, given: pd.Series) -> None:
    """New photos of observations already in the store (`stored`) may not give them another split (`given`, on the
    same rows: the split their subset names, or None): moving an observation would put photos the head was trained
    on into test (or test photos into training). Raises SnakewebError."""
    moved = [(o, was, now) for o, was, now in zip(stored["observation_id"], stored["split"], given) if pd.notna(now) and now != was]
    if moved:
        shown = ", ".join(f"observation {o} (in {was}, now given {now})" for o, was, now in moved[:3])
        raise SnakewebError(f"{len(moved)} observation(s) already in the store are given another subset by their new photos "
                            f"({shown}{' and more' if len(moved) > 3 else ''}); one observation stays in one split: give "
                            "those photos the observation's subset, or leave it empty.")
