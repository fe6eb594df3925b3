"""Byte-identical copies among a store's photos, found by the sha256 the embed stage records of every file it reads.

A copy is the same file saved twice (not a link: links are one photo, snakeweb.paths). Two kinds matter:
a copy in another split than its original (a test photo the head has seen in training, so test scores are too
good, and a kNN head finds the photo itself) and copies labelled as two species (at least one label is wrong).
`check` reports both, and `evaluate` counts the observations it scores that have a copy in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from snakeweb.store import Store

MAX_SHOWN = 3


@dataclass
class Copies:
    """Groups of byte-identical photos (status ok) in a store. `groups`: groups of two or more; `extra`: photos
    beyond the first of each group; `across_splits` / `two_labels`: groups whose photos lie in more than one
    split / carry more than one class id; `shown_*`: up to MAX_SHOWN groups of each kind, as 'a.jpg = b.jpg and 3 more'."""

    groups: int = 0
    extra: int = 0
    across_splits: int = 0
    two_labels: int = 0
    shown_across_splits: list[str] = field(default_factory=list)
    shown_two_labels: list[str] = field(default_factory=list)


def find_copies(store: Store) -> Copies:
    """The store's copies (see `Copies`). Photos not yet embedded have no sha256 and are not compared."""
    rows = store.query(
        "WITH g AS (SELECT sha256 FROM images WHERE status = 'ok' AND sha256 IS NOT NULL GROUP BY sha256 HAVING count(*) > 1) "
        "SELECT i.sha256, i.path, i.split, i.class_id FROM images i JOIN g USING (sha256) WHERE i.status = 'ok' "
        "ORDER BY i.sha256, i.image_id")
    if rows.empty:
        return Copies()
    by_group = rows.groupby("sha256", sort=False)
    splits = by_group["split"].nunique()
    labels = by_group["class_id"].nunique()  # (photos without a label do not disagree with one that has)
    paths = by_group["path"].agg(lambda p: " = ".join(p[:2]) + (f" and {len(p) - 2} more" if len(p) > 2 else ""))
    found = Copies(groups=len(splits), extra=len(rows) - len(splits), across_splits=int((splits > 1).sum()),
                   two_labels=int((labels > 1).sum()))
    found.shown_across_splits = paths[splits > 1].head(MAX_SHOWN).tolist()
    found.shown_two_labels = paths[labels > 1].head(MAX_SHOWN).tolist()
    return found


def observations_copied_from_training(store: Store, observation_ids: list[str]) -> int:
    """How many of `observation_ids` (observations of a held-out split) have a photo byte-identical to a photo of a
    training observation: the head has seen that photo with its label, so its scores there are optimistic."""
    if not observation_ids:
        return 0
    frame = pd.DataFrame({"observation_id": pd.Series(observation_ids, dtype=str)})
    with store.connect(read_only=True) as con:
        con.register("scored", frame)
        return int(con.execute(
            "SELECT count(DISTINCT i.observation_id) FROM images i JOIN scored USING (observation_id) "
            "WHERE i.status = 'ok' AND i.split <> 'train' AND i.sha256 IN "
            "(SELECT sha256 FROM images WHERE split = 'train' AND status = 'ok' AND sha256 IS NOT NULL)").fetchone()[0])
