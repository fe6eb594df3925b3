"""FAISS index over L2-normalised embeddings; its ids are the store's image ids, never insertion order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import faiss
import numpy as np

from snakeweb.embed import l2_normalise
from snakeweb.errors import SnakewebError
from snakeweb.store import write_atomically


def ids_digest(image_ids: np.ndarray) -> str:
    """A short digest of the sorted id set, recorded in the store to check index/DuckDB agreement."""
    return hashlib.sha256(np.sort(np.asarray(image_ids, dtype=np.int64)).tobytes()).hexdigest()[:16]


def build_index(image_ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """Exact inner product on normalised vectors (= cosine similarity), keyed by image id."""
    if len(image_ids) != len(vectors):
        raise ValueError("one id per vector")
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(vectors.shape[1])))
    index.add_with_ids(np.ascontiguousarray(l2_normalise(vectors)), np.asarray(image_ids, dtype=np.int64))
    return index


def index_ids(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)


def save_index(index: faiss.Index, path: Path) -> None:
    write_atomically(Path(path), lambda tmp: faiss.write_index(index, tmp))


def load_index(path: Path) -> faiss.Index:
    if not Path(path).is_file():
        raise SnakewebError(f"No index at {path}; run `python -m pipelines index --store {Path(path).parent}`.")
    return faiss.read_index(str(path))


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, image ids), each [n, k]; missing neighbours have id -1."""
    k = max(1, min(k, index.ntotal))
    return index.search(np.ascontiguousarray(l2_normalise(queries)), k)
