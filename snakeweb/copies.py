"""Byte-identical copies among a store's photos, found by the sha256 the embed stage records of every file it reads.

A copy is the same file saved twice (not a link: links are one photo, snakeweb.paths). Two kinds matter:
a copy in another split than its original (a test photo the head has seen in training, so test scores are too
good, and a kNN head finds the photo itself) and copies labelled as two species (at least one label is wrong).
`check` reports both, and `evaluate` counts the observations it scores that have a copy in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from snakeweb.store import Store

log = logging.getLogger(__name__)

MAX_SHOWN = 3


@dataclass
class Copies:
    """Groups of byte-identical photos (status ok) in a store. `groups`: groups of two or more; `extra`: photos
    beyond the first of each group; `across_splits` / `two_labels`: groups whose photos lie in more than one
    split / carry more than one class id (`two_label_photos`: the photos of those); `shown_*`: up to MAX_SHOWN groups of each kind, as
    'a.jpg (split train) = b.jpg (split test) and 3 more';
    `compared`: photos with a recorded sha256; `unhashed`: those with none (vectors brought in by import-embeddings), which were not compared."""

    groups: int = 0
    extra: int = 0
    across_splits: int = 0
    two_labels: int = 0
    two_label_photos: int = 0  # photos in the groups that carry more than one class id
    shown_across_splits: list[str] = field(default_factory=list)
    shown_two_labels: list[str] = field(default_factory=list)
    compared: int = 0  # photos with a recorded sha256
    unhashed: int = 0  # photos without one (imported vectors): not compared
    gone_two_labels: list[str] = field(default_factory=list)  # photos of the two-label groups no longer on disk


def find_copies(store: Store) -> Copies:
    """The store's copies (see `Copies`) among its embedded photos."""
    counts = store.query("SELECT count(sha256) AS compared, count(*) - count(sha256) AS unhashed FROM images WHERE status = 'ok'")
    compared, unhashed = int(counts["compared"][0]), int(counts["unhashed"][0])
    rows = store.query(
        "WITH g AS (SELECT sha256 FROM images WHERE status = 'ok' AND sha256 IS NOT NULL GROUP BY sha256 HAVING count(*) > 1) "
        "SELECT i.sha256, i.path, i.split, i.class_id FROM images i JOIN g USING (sha256) WHERE i.status = 'ok' "
        "ORDER BY i.sha256, i.image_id")
    if rows.empty:
        return Copies(compared=compared, unhashed=unhashed)
    by_group = rows.groupby("sha256", sort=False)
    splits = by_group["split"].nunique()
    labels = by_group["class_id"].nunique()  # (photos without a label do not disagree with one that has)
    def shown(group: pd.DataFrame, what: str) -> str:
        """Two photos of the group that differ in `what` (split or class id), each with its value."""
        first = group.iloc[0]
        other = group[group[what].ne(first[what]) & group[what].notna()].iloc[0]
        rest = len(group) - 2
        return f"{first['path']} ({what} {first[what]}) = {other['path']} ({what} {other[what]})" + (f" and {rest} more" if rest else "")

    found = Copies(groups=len(splits), extra=len(rows) - len(splits), across_splits=int((splits > 1).sum()),
                   two_labels=int((labels > 1).sum()), two_label_photos=int(by_group.size()[labels > 1].sum()), compared=compared,
                   unhashed=unhashed)
    groups = dict(iter(by_group))
    found.shown_across_splits = [shown(groups[key], "split") for key in splits[splits > 1].index[:MAX_SHOWN]]
    found.shown_two_labels = [shown(groups[key], "class_id") for key in labels[labels > 1].index[:MAX_SHOWN]]
    found.gone_two_labels = [path for key in labels[labels > 1].index for path in groups[key]["path"]
                             if not Path(path).is_file()]
    return found


def two_labels_advice(store: Store, found: Copies) -> str:
    """What fixes copies labelled as two species: where one copy's file is gone (a photo moved to another species'
    folder leaves its old row behind), `build --remove-gone` removes it; else deleting the wrong copy."""
    from snakeweb.errors import shell_word

    if found.gone_two_labels:
        shown = ", ".join(found.gone_two_labels[:MAX_SHOWN])
        return (f"{len(found.gone_two_labels)} of their photos are no longer on disk (e.g. {shown}: moved to another "
                f"species' folder?), so run `python -m pipelines build --store {shell_word(store.root)} --images DIR "
                "--remove-gone`, which removes the photos gone from the folder")
    return "delete the wrong copy and build a new store"


def warn_of_copies(store: Store) -> None:
    """Say on stderr (warnings) when byte-identical photos carry two species (the head would be trained on both labels
    of one picture; `check` fails the store for them, snakeweb.integrity), and when they lie in two splits (a renamed
    species folder is ingested again and split anew: test photos the head was trained on, with nothing said)."""
    found = find_copies(store)
    if found.across_splits:
        log.warning("%d group(s) of byte-identical photos lie in more than one split (e.g. %s; a renamed or copied folder?), "
                    "so validation and test count photos the head has seen; delete the extra copies and build a new store.",
                    found.across_splits, "; ".join(found.shown_across_splits))
    if found.two_labels:
        log.warning("%d photo(s) have the same bytes as a photo under another species (%d group(s), e.g. %s), so one label "
                    "is wrong and the head learns both; %s.",
                    found.two_label_photos, found.two_labels, "; ".join(found.shown_two_labels), two_labels_advice(store, found))


def copies_of_training(store: Store, observation_ids: list[str], split: str) -> dict[str, int]:
    """Of `observation_ids` (the scored observations of `split`): `observations_copied_from_training`, how many have
    a photo byte-identical to a photo of a training observation (the head has seen it with its label, so their
    scores are optimistic), and `observations_not_compared_for_copies`, how many have a photo without a recorded
    sha256 (vectors brought in by import-embeddings), which could not be compared. Both 0 for the train split."""
    if split == "train" or not observation_ids:
        return {"observations_copied_from_training": 0, "observations_not_compared_for_copies": 0}
    frame = pd.DataFrame({"observation_id": pd.Series(observation_ids, dtype=str)})
    with store.connect(read_only=True) as con:
        con.register("scored", frame)
        copied, unhashed = con.execute(
            "SELECT count(DISTINCT i.observation_id) FILTER (i.sha256 IN (SELECT sha256 FROM images WHERE split = 'train' "
            "AND status = 'ok' AND sha256 IS NOT NULL)), count(DISTINCT i.observation_id) FILTER (i.sha256 IS NULL) "
            "FROM images i JOIN scored USING (observation_id) WHERE i.status = 'ok' AND i.split <> 'train'").fetchone()
    return {"observations_copied_from_training": int(copied), "observations_not_compared_for_copies": int(unhashed)}
