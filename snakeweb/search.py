"""Nearest-neighbour image search with filters (species, venom status, country), exact inside the filter:
FAISS searches only the allowed image ids (an ID selector), so filtered results are never short."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd

from snakeweb.embed import l2_normalise
from snakeweb.errors import SnakewebError
from snakeweb.index import selector_parameters
from snakeweb.store import Store


def image_catalogue(store: Store) -> pd.DataFrame:
    """Every readable image with its species, venom status (venomous / harmless / unknown; None when the
    image is unlabelled), country and observation: what the filters and captions need."""
    return store.query(
        "SELECT i.image_id, i.path, i.observation_id, i.class_id, s.binomial_name, s.genus, "
        "s.venom_status, o.country_code FROM images i "
        "LEFT JOIN species s USING (class_id) LEFT JOIN observations o USING (observation_id) "
        "WHERE i.status = 'ok' ORDER BY i.image_id"
    ).set_index("image_id")


def stored_vector(store: Store, image_id: int) -> np.ndarray:
    rows = store.query("SELECT vector FROM embeddings WHERE image_id = ?", [int(image_id)])
    if rows.empty:
        raise SnakewebError(f"Image {image_id} is not in this store (or could not be read when it was built).")
    return np.asarray(rows["vector"][0], dtype=np.float32)


def filter_ids(catalogue: pd.DataFrame, species: list[int] | None = None, venom_status: str | None = None,
               countries: list[str] | None = None) -> np.ndarray | None:
    """Image ids passing the filters (`venom_status` one of venomous / harmless / unknown), or None when no
    filter is set."""
    mask = pd.Series(True, index=catalogue.index)
    if species:
        mask &= catalogue["class_id"].isin(species)
    if venom_status is not None:
        mask &= catalogue["venom_status"] == venom_status
    if countries:
        mask &= catalogue["country_code"].isin(countries)
    if mask.all():
        return None
    return catalogue.index[mask].to_numpy(np.int64)


def search_images(index: faiss.Index, catalogue: pd.DataFrame, query: np.ndarray, k: int = 12,
                  allowed_ids: np.ndarray | None = None, exclude_ids: set[int] | None = None) -> pd.DataFrame:
    """The k most similar images to `query` (one vector or several, best similarity per image), restricted
    to `allowed_ids` when given; columns image_id, similarity and the catalogue's."""
    if k <= 0:
        return catalogue.iloc[:0].reset_index().assign(similarity=[])
    queries = np.ascontiguousarray(l2_normalise(np.atleast_2d(query)))
    fetch = k + len(exclude_ids or ())
    params = None
    if allowed_ids is not None:
        if len(allowed_ids) == 0:
            return catalogue.iloc[:0].reset_index().assign(similarity=[])
        params = selector_parameters(index, np.asarray(allowed_ids, dtype=np.int64))
    sims, ids = index.search(queries, min(fetch, index.ntotal), params=params)
    best: dict[int, float] = {}
    for sim, image_id in zip(sims.ravel(), ids.ravel()):
        image_id = int(image_id)
        if image_id < 0 or image_id in (exclude_ids or ()) or image_id not in catalogue.index:
            continue
        best[image_id] = max(best.get(image_id, -np.inf), float(sim))
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:k]
    result = catalogue.loc[[i for i, _ in ranked]].reset_index()
    result["similarity"] = [s for _, s in ranked]
    return result
