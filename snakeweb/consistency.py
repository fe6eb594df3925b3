"""One observation is one animal, and photos already in a store keep what they were given.

Ingest calls these before it writes anything: within one metadata file, across the files of one ingest, against
the observations already stored, and for photos listed again. Each refusal is one SnakewebError sentence that names
an example and what to do; keeping the first value instead would be a silent guess (one observation holding two
species, or one animal on both sides of a split).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.paths import same_file_groups
from snakeweb.splits import split_of


def one_animal_per_observation(rows: pd.DataFrame, table) -> None:
    """The photos of one observation show one animal in one place, in one split: rows that give it two class ids,
    two countries or two subsets (train vs validation vs test) are refused (keeping the first would be a silent
    guess, and a split would put one animal on both sides)."""
    rows = rows.assign(split=rows["subset"].map(split_of)) if rows.get("subset") is not None else rows
    for column in ("class_id", "country_code", "split"):
        if column not in rows:
            continue
        values = rows[["observation_id", column]].dropna()
        counts = values.groupby("observation_id")[column].nunique()
        if (counts > 1).any():
            first = counts[counts > 1].index[0]
            mask = (rows["observation_id"] == first).to_numpy()
            shown = {"class_id": "class_id", "split": "subset"}.get(column) or ("code" if table.has("code") else "country")
            named = "subset" if column == "split" else column
            raise table.fail(f"{int((counts > 1).sum())} observation(s) have photos with different {named} values, e.g. "
                             f"observation {first} ({table.where(mask, shown)}); one observation is one animal.")


def one_value_per_observation(frame: pd.DataFrame) -> pd.DataFrame:
    """Every metadata row of an observation gets the observation's class id, name, country and subset where its own
    cell is empty (the checks above refused two different values): the first row's empty cell became the
    observation's, so an observation whose first row had no class_id was stored unlabelled and never trained on, and
    one photo listed twice kept whichever row came first."""
    frame = frame.copy()
    key = frame["observation_id"].astype(str)
    for column in ("country_code", "subset"):
        if column in frame and frame[column].notna().any():
            values = frame[column].astype(object)
            frame[column] = values.fillna(values.groupby(key).transform("first"))
    # the species as a pair from one row: a row with only a name and one with only a class id are compared once the
    # name is matched (one_class_per_observation); a row with neither takes the first labelled row's pair
    names = frame["binomial_name"] if "binomial_name" in frame else pd.Series(None, index=frame.index, dtype=object)
    unlabelled = frame["class_id"].isna() & names.isna()
    labelled = frame[~unlabelled].assign(_key=key[~unlabelled]).drop_duplicates("_key").set_index("_key")
    if unlabelled.any() and len(labelled):
        taken = key[unlabelled].map(labelled["class_id"])
        frame.loc[unlabelled, "class_id"] = taken.astype(frame["class_id"].dtype)
        if "binomial_name" in frame:
            frame["binomial_name"] = frame["binomial_name"].astype(object)
            frame.loc[unlabelled, "binomial_name"] = key[unlabelled].map(labelled["binomial_name"])
    return frame


def same_animal_as_stored(con, fresh: pd.DataFrame) -> None:
    """New photos of an observation already in the store show the same animal: another class id or country for it
    is refused, as within one file (one_animal_per_observation). Raises SnakewebError."""
    if fresh.empty:
        return
    countries = fresh["country_code"] if "country_code" in fresh else pd.Series(None, index=fresh.index)
    con.register("_new_photos", pd.DataFrame({"observation_id": fresh["observation_id"].astype(str),
                                              "class_id": fresh["class_id"].astype("Int64"),
                                              "country_code": countries.astype(object).where(countries.notna(), None)}))
    clash = con.execute(
        "SELECT n.observation_id, o.class_id, n.class_id, o.country_code, n.country_code FROM _new_photos n JOIN observations o "
        "USING (observation_id) WHERE (n.class_id IS NOT NULL AND n.class_id IS DISTINCT FROM o.class_id) OR "
        "(n.country_code IS NOT NULL AND n.country_code IS DISTINCT FROM o.country_code)").fetchall()
    con.unregister("_new_photos")
    if clash:
        # a class or country given to a stored observation that had none is refused too: its stored photos would
        # stay unlabelled (or countryless) beside the new ones, and the observation was kept without it, unsaid
        observation, old_class, new_class, old_country, new_country = clash[0]
        what = (f"{'no class' if old_class is None else f'class {old_class}'} in the store, class {new_class} now"
                if old_class != new_class and new_class is not None
                else f"{'no country' if old_country is None else f'country {old_country}'} in the store, {new_country} now")
        raise SnakewebError(f"{len({c[0] for c in clash})} observation(s) already in the store are given new photos of another "
                            f"species or country (e.g. observation {observation}: {what}); one observation is one animal: give "
                            "those photos their own observation id, or correct the class or country.")


def one_animal_across_files(frame: pd.DataFrame) -> None:
    """Across the metadata files of one ingest too, one observation has one class id, one country and one subset
    (within a file, one_animal_per_observation names the lines; the observations table keeps one value each, so a
    second would be dropped unsaid). Raises SnakewebError."""
    rows = frame.assign(split=frame["subset"].map(split_of)) if frame.get("subset") is not None else frame
    for column, what in (("class_id", "class ids"), ("country_code", "countries"), ("split", "subsets")):
        if column not in rows:
            continue
        values = rows[["observation_id", column]].dropna().groupby("observation_id")[column].unique()
        twice = values[values.map(len) > 1]
        if len(twice):
            raise SnakewebError(f"{len(twice)} observation(s) are given two {what} across the metadata files (e.g. observation "
                                f"{twice.index[0]}: {' and '.join(sorted(map(str, twice.iloc[0])))}); one observation is one "
                                "animal, in one split: correct one of them.")


def refuse_relabels(listing: pd.DataFrame, stored: pd.DataFrame) -> None:
    """Photos already in the store keep their labels: an ingest that gives one of them another class,
    observation, country or subset is refused (ignoring it would leave the store saying something the user did not)."""
    both = listing.merge(stored, on="path", suffixes=("", "_stored"))
    if both.empty:
        return
    if "subset" in both:  # a subset given again for a stored photo is its split, or it would move
        both["split_given"] = both["subset"].map(split_of)
        both["split_given_stored"] = both["split"].where(both["split"].isin(["train", "val", "test"]))
    for column, what in (("class_id", "class id"), ("observation_id", "observation"), ("country_code", "country"),
                         ("split_given", "split")):
        if column not in both:
            continue
        new, old = both[column].astype(object), both[f"{column}_stored"].astype(object)
        # compared in Python: pandas reads None != None as True, which made an unlabelled photo "relabelled"
        differs = pd.Series([_comparable(a) != _comparable(b) for a, b in zip(new, old)], index=both.index, dtype=bool)
        if column == "country_code":
            differs &= new.notna()  # a folder gives no country: that is not a change
        if column == "split_given":
            differs &= new.notna() & old.notna()  # an empty subset gives no split; an unlabelled photo has none to keep
        if differs.any():
            first = both[differs].iloc[0]
            fix = {"split_given": "snakeweb does not move stored photos between splits: give them their stored subset (or "
                                  "none), or build a new store",
                   "class_id": "snakeweb does not relabel stored photos: correct a class with reviews (the Review page or "
                               "import-reviews), or build a new store"}.get(
                column, f"snakeweb does not change a stored photo's {what}: give it its stored one, or build a new store")
            old, new = (_comparable(first[c]) for c in (f"{column}_stored", column))
            raise SnakewebError(
                f"{int(differs.sum())} photo(s) already in the store would get another {what} (e.g. {first['path']}: "
                f"{'(empty)' if old is None else old} -> {'(empty)' if new is None else new}); {fix}.")


def _comparable(value: object) -> object:
    return None if value is None or pd.isna(value) else int(value) if isinstance(value, float | np.integer) else value


def one_observation_per_photo(frame: pd.DataFrame) -> None:
    """One photo listed in the metadata under two observations is refused: by one path (after `..` and folder links
    are resolved), or by two names of one file (a symbolic or hard link, `paths.same_file_groups`). Keeping the
    first row dropped the second observation's photo unsaid, and the same bytes stored twice under two species put
    one animal in two splits. Within one observation, another class, country or subset is refused by the checks
    above; rows that repeat each other exactly are fine. Raises SnakewebError naming an example."""
    keys = list(frame["path"])  # a missing file is one photo by its one path
    for members in same_file_groups(keys):
        for i in members:
            keys[i] = keys[members[0]]
    keys = pd.Series(keys, index=frame.index)
    repeated = frame[keys.duplicated(keep=False)]
    groups = repeated.groupby(keys[repeated.index])
    observations = groups["observation_id"].agg(lambda o: list(dict.fromkeys(map(str, o))))
    twice = observations[observations.map(len) > 1]
    if len(twice):
        names = list(dict.fromkeys(groups.get_group(twice.index[0])["path"]))
        shown = names[0] + (f" (also named {names[1]})" if len(names) > 1 else "")
        raise SnakewebError(f"{len(twice)} photo(s) are listed in the metadata under more than one observation (e.g. "
                            f"{shown}: observations {' and '.join(twice.iloc[0])}); a photo shows one animal: list it "
                            "under one observation.")


def one_class_per_observation(listing: pd.DataFrame) -> None:
    """After species names are matched to class ids, one observation still has one class: a row giving only a class
    id and another giving only a name of another species were not compared before (the check above sees class ids
    as written). Raises SnakewebError naming the observation and both classes."""
    labelled = listing[listing["class_id"].notna()]
    classes = labelled.groupby(labelled["observation_id"].astype(str))["class_id"].unique()
    twice = classes[classes.map(len) > 1]
    if len(twice):
        rows = labelled[labelled["observation_id"].astype(str) == twice.index[0]]
        shown = " and ".join(dict.fromkeys(f"{int(c)}" + (f" ({n})" if isinstance(n, str) else "")
                                           for c, n in zip(rows["class_id"], rows["binomial_name"])))
        raise SnakewebError(f"{len(twice)} observation(s) are given two species by their rows (e.g. observation {twice.index[0]}: "
                            f"{shown}); one observation is one animal: correct the class_id or binomial_name of those rows.")
