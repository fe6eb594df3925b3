"""Data for the embedding map: UMAP coordinates joined with species, venom flag and whether the head's
top-1 for the observation is right; large stores are sampled at a stated rate so the chart stays fast."""

from __future__ import annotations

import pandas as pd

from snakeweb.store import Store

MAX_POINTS = 20_000  # what a browser scatter plot draws smoothly


def map_points(store: Store, max_points: int = MAX_POINTS, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """(points, sampling rate). Sampling is stratified by species so small species stay visible."""
    points = store.query(
        "SELECT p.image_id, p.x, p.y, i.path, i.observation_id, COALESCE(s.binomial_name, 'unlabelled') AS binomial_name, "
        "COALESCE(s.genus, 'unlabelled') AS genus, COALESCE(s.venom_status, 'unlabelled') AS venom_status, "
        "CASE WHEN i.class_id IS NULL OR pr.class_id IS NULL THEN 'unknown' "
        "     WHEN pr.class_id = i.class_id THEN 'correct' ELSE 'incorrect' END AS prediction "
        "FROM projection p JOIN images i USING (image_id) LEFT JOIN species s ON s.class_id = i.class_id "
        "LEFT JOIN predictions pr ON pr.observation_id = i.observation_id AND pr.rank = 1"
    )
    if len(points) <= max_points:
        return points, 1.0
    rate = max_points / len(points)
    sampled = points.groupby("binomial_name", group_keys=False).apply(
        lambda g: g.sample(max(1, round(len(g) * rate)), random_state=seed)
    )
    return sampled.reset_index(drop=True), len(sampled) / len(points)
