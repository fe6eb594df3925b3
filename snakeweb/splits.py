"""Train / validation / test splits, always by observation (the photos of one animal stay together): the
metadata's official subsets when it has both train and validation rows, else snakeweb's own deterministic split,
stratified by species. Used by ingest and import-embeddings alike."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

import pandas as pd

from snakeweb.store import set_meta

if TYPE_CHECKING:
    import duckdb

    from snakeweb.tables import Table

log = logging.getLogger(__name__)
TRAIN_SUBSETS = {"train", "train-hm", "train-in", "training"}
VAL_SUBSETS = {"val", "valid", "validation"}
TEST_SUBSETS = {"test", "testing"}


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
    """Official subsets when the metadata has both train and validation rows; else our stratified split. A store
    split by official subsets keeps them on a later ingest (run metadata `split_source`): observations it adds
    with a subset take it, those without are trained on; re-splitting would move test photos into training."""
    observations = con.execute("SELECT observation_id, class_id, split FROM observations").df()
    known_subsets = {str(s).lower() for s in subsets.values() if isinstance(s, str)}
    recorded = con.execute("SELECT value FROM run_metadata WHERE key = 'split_source'").fetchall()
    official_before = bool(recorded) and json.loads(recorded[0][0]) == "metadata subsets"
    if (known_subsets & TRAIN_SUBSETS and known_subsets & VAL_SUBSETS) or official_before:
        set_meta(con, "split_source", "metadata subsets")
        def official(row):
            subset = str(subsets.get(row.observation_id, "")).lower()
            if subset in TRAIN_SUBSETS | VAL_SUBSETS | TEST_SUBSETS:
                return "train" if subset in TRAIN_SUBSETS else "val" if subset in VAL_SUBSETS else "test"
            return row.split if row.split != "unassigned" else "train"  # no subset given: trained on

        # unlabelled observations are never trained on, whatever their subset: only labelled ones count here
        labelled = observations.loc[observations["class_id"].notna(), "observation_id"]
        no_subset = sum(1 for o in labelled if o in subsets and not isinstance(subsets[o], str))
        if no_subset:
            log.warning("%d observation(s) in the metadata have no subset; they are trained on.", no_subset)
        unlabelled_in_a_split = sum(1 for o in observations.loc[observations["class_id"].isna(), "observation_id"]
                                    if str(subsets.get(o, "")).lower() in TRAIN_SUBSETS | VAL_SUBSETS | TEST_SUBSETS)
        if unlabelled_in_a_split:
            log.warning("%d observation(s) have a train, validation or test subset but no class_id; they are stored as "
                        "unlabelled (give their class_id to use them).", unlabelled_in_a_split)
        observations["split"] = [official(r) for r in observations.itertuples()]
        observations.loc[observations["class_id"].isna(), "split"] = "unlabelled"
    else:
        if known_subsets:
            log.warning("The subsets given (%s) lack a train or a validation subset, so they are not used: snakeweb makes its "
                        "own stratified train/val/test split of the new observations instead (photos already in the store keep "
                        "their split).", ", ".join(sorted(known_subsets)))
        observations["split"] = assign_splits(observations)
        set_meta(con, "split_source", "snakeweb (stratified by species, sha1 of the observation id)")
    con.register("splits", observations[["observation_id", "split"]])
    con.execute("UPDATE observations o SET split = s.split FROM splits s WHERE o.observation_id = s.observation_id")
    con.execute("UPDATE images i SET split = o.split FROM observations o WHERE i.observation_id = o.observation_id")
