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


# A flat (exact) search reads every stored vector for each query, so its latency is set by memory bandwidth:
# exact up to 16M floats (64 MB: a few ms here; HackerEarth-35 at 2,560-d is 11M), IVF with 8-bit scalar
# quantisation above. Measured (benchmarks/run.py): 200k x 1280 flat took 117 ms a query on this machine.
EXACT_UP_TO_FLOATS = 16_000_000
IVF_TRAIN_SAMPLE = 64  # training points per IVF list (FAISS warns below 39)


def index_spec(count: int, dim: int) -> tuple[str, int]:
    """FAISS `index_factory` string and nprobe for `count` vectors of `dim` floats (nprobe 0 = exact)."""
    if count * dim <= EXACT_UP_TO_FLOATS:
        return "Flat", 0
    lists = int(2 ** round(np.log2(np.sqrt(count))))  # ~sqrt(n) lists: 1024 for 1M
    # Embedding neighbourhoods are diffuse: on real Lite2 features a scan of 12.5% of the lists finds 92% of
    # the exact top 10, 25% finds 97.6%; on 1M synthetic clustered vectors 3% found 62%. Scan ~1/6.
    return f"IVF{lists},SQ8", max(16, lists // 6)


def build_index(image_ids: np.ndarray, vectors: np.ndarray, spec: str | None = None, nprobe: int | None = None) -> faiss.Index:
    """Inner product on normalised vectors (= cosine similarity), keyed by image id; exact for stores up to
    EXACT_UP_TO_FLOATS, IVF with 8-bit scalar quantisation above (or the given `index_factory` spec)."""
    if len(image_ids) != len(vectors):
        raise ValueError("one id per vector")
    x = np.ascontiguousarray(l2_normalise(vectors))
    auto_spec, auto_nprobe = index_spec(*x.shape)
    spec = spec or auto_spec
    inner = faiss.index_factory(int(x.shape[1]), spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(inner)
    if not inner.is_trained:
        lists = ivf.nlist if ivf is not None else 0
        sample = np.random.default_rng(0).choice(len(x), min(len(x), max(lists * IVF_TRAIN_SAMPLE, 10_000)), replace=False)
        inner.train(x[np.sort(sample)])
    if ivf is not None:
        ivf.nprobe = nprobe or auto_nprobe
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(x, np.asarray(image_ids, dtype=np.int64))
    return index


def _inner(index: faiss.Index) -> faiss.Index:
    """The index inside the image-id map."""
    return faiss.downcast_index(faiss.downcast_index(index).index)


def selector_parameters(index: faiss.Index, selector: faiss.IDSelector) -> faiss.SearchParameters:
    """Search parameters restricting results to `selector` (IVF indexes need their own kind, with nprobe)."""
    ivf = faiss.try_extract_index_ivf(_inner(index))
    if ivf is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
    return faiss.SearchParameters(sel=selector)


def describe(index: faiss.Index) -> dict:
    """What kind of index this is, for the store's run metadata."""
    inner = _inner(index)
    if isinstance(inner, faiss.IndexFlat):
        return {"kind": "IDMap2,Flat", "exact": True}
    ivf = faiss.extract_index_ivf(inner)
    return {"kind": f"IDMap2,IVF{ivf.nlist},SQ8" if isinstance(inner, faiss.IndexIVFScalarQuantizer) else "IDMap2,IVF",
            "exact": False, "nprobe": int(ivf.nprobe)}


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
