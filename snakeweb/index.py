"""FAISS index over L2-normalised embeddings; its ids are the store's image ids, never insertion order.

What needs no FAISS (reading a saved index's ids, searching an exact one) is in snakeweb.vectors."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from snakeweb.errors import SnakewebError, shell_word
from snakeweb.outputs import write_atomically
from snakeweb.vectors import ids_digest, l2_normalise  # noqa: F401 (ids_digest: defined there, without FAISS)

log = logging.getLogger(__name__)


# A flat (exact) search reads every stored vector for each query, so its latency is set by memory bandwidth:
# exact up to 16M floats (64 MB: a few ms here; HackerEarth-35 at 2,560-d is 11M). Above that: IVF with ~sqrt(n)
# lists over 4-bit fast-scan PQ codes (dim/16 bytes a vector, scanned with SIMD lookup tables), half the lists
# scanned, and the best 40 x k candidates re-ranked with 8-bit scalar-quantised vectors (dim bytes). Embedding
# neighbourhoods are diffuse (on real Lite2 features a quarter of the lists held 97.6% of the exact top 10), so
# a cheap wide scan beats a narrow exact one. Measured (benchmarks/run.py, 1M x 768 clustered vectors): 0.83 GB,
# recall@10 0.975, 6.3 ms a query; IVF1024,SQ8 scanning a sixth of its lists: 0.79 GB, 0.92, 27 ms.
EXACT_UP_TO_FLOATS = 16_000_000
IVF_TRAIN_SAMPLE = 64  # training points per IVF list (FAISS warns below 39)
REFINE_K_FACTOR = 40
ADD_CHUNK_ROWS = 16_384  # vectors given to FAISS per add: 240 MB of float32 at 3840-d


@dataclass(frozen=True)
class IndexSpec:
    factory: str  # FAISS index_factory string
    nprobe: int = 0  # IVF lists scanned per query (0: exact)
    k_factor: int = 1  # candidates re-ranked per result wanted


def index_spec(count: int, dim: int) -> IndexSpec:
    """The index for `count` vectors of `dim` floats."""
    if count * dim <= EXACT_UP_TO_FLOATS:
        return IndexSpec("Flat")
    lists = int(2 ** round(np.log2(np.sqrt(count))))  # ~sqrt(n) lists: 1024 for 1M
    sub_quantisers = next(m for m in range(max(1, dim // 8), 0, -1) if dim % m == 0)  # 8 dimensions each where dim allows
    return IndexSpec(f"IVF{lists},PQ{sub_quantisers}x4fs,Refine(SQ8)", nprobe=lists // 2, k_factor=REFINE_K_FACTOR)


def build_index(image_ids: np.ndarray, vectors: np.ndarray, spec: IndexSpec | None = None, overwrite: bool = False) -> faiss.Index:
    """Inner product on normalised vectors (= cosine similarity), keyed by image id; exact for stores up to
    EXACT_UP_TO_FLOATS, IVF over fast-scan PQ re-ranked by 8-bit vectors above (or the given spec). With
    `overwrite`, `vectors` (float32, C order) are normalised in place rather than copied."""
    if len(image_ids) != len(vectors):
        raise ValueError("one id per vector")
    x = np.ascontiguousarray(l2_normalise(vectors, in_place=overwrite))
    spec = spec or index_spec(*x.shape)
    inner = faiss.index_factory(int(x.shape[1]), spec.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(inner)
    if not inner.is_trained:
        lists = ivf.nlist if ivf is not None else 0
        sample = np.random.default_rng(0).choice(len(x), min(len(x), max(lists * IVF_TRAIN_SAMPLE, 10_000)), replace=False)
        if ivf is not None and gpu_count():
            # the k-means of the IVF lists on the GPU (FAISS's own way: a GPU index as the clustering index);
            # the index itself, its codes and the saved file stay CPU ones
            ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(int(x.shape[1])))
        inner.train(x[np.sort(sample)])
    if ivf is not None:
        ivf.nprobe = spec.nprobe or max(1, ivf.nlist // 2)
    if isinstance(inner, faiss.IndexRefine):
        inner.k_factor = spec.k_factor
    index = faiss.IndexIDMap2(inner)
    ids = np.asarray(image_ids, dtype=np.int64)
    # added in chunks: an IVF index encodes the residuals of all the vectors it is given at once, a second [n, D]
    # float32 array (2.2 GB for SnakeCLEF's training split at 3840-d) when given them all
    for start in range(0, len(x), ADD_CHUNK_ROWS):
        index.add_with_ids(x[start:start + ADD_CHUNK_ROWS], ids[start:start + ADD_CHUNK_ROWS])
    return index


def _inner(index: faiss.Index) -> faiss.Index:
    """The index inside the image-id map."""
    return faiss.downcast_index(faiss.downcast_index(index).index)


def selector_parameters(index: faiss.Index, allowed_ids: np.ndarray) -> faiss.SearchParameters:
    """Search parameters restricting results to the images `allowed_ids`."""
    inner = _inner(index)
    ivf = faiss.try_extract_index_ivf(inner)
    if isinstance(inner, faiss.IndexRefine):
        # the id map translates the selector it is given, but IndexRefine does not hand that one to its base
        # index: the base gets a selector of stored positions instead
        selector = faiss.IDSelectorBatch(np.flatnonzero(np.isin(index_ids(index), allowed_ids)).astype(np.int64))
        base = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        params = faiss.IndexRefineSearchParameters(k_factor=inner.k_factor, base_index_params=base)
        params.referenced_objects = [selector, base]  # the SWIG objects must outlive the search
        return params
    selector = faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
    params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe) if ivf is not None else faiss.SearchParameters(sel=selector)
    params.referenced_objects = [selector]
    return params


def describe(index: faiss.Index) -> dict:
    """What kind of index this is, for the store's run metadata."""
    inner = _inner(index)
    if isinstance(inner, faiss.IndexFlat):
        return {"kind": "IDMap2,Flat", "exact": True}
    ivf = faiss.extract_index_ivf(inner)
    if isinstance(inner, faiss.IndexRefine):
        base = faiss.downcast_index(inner.base_index)
        return {"kind": f"IDMap2,IVF{ivf.nlist},PQ{base.M}x4fs,Refine(SQ8)", "exact": False, "nprobe": int(ivf.nprobe),
                "k_factor": int(inner.k_factor)}
    return {"kind": f"IDMap2,IVF{ivf.nlist},SQ8" if isinstance(inner, faiss.IndexIVFScalarQuantizer) else "IDMap2,IVF",
            "exact": False, "nprobe": int(ivf.nprobe)}


def index_ids(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)


def save_index(index: faiss.Index, path: Path) -> None:
    write_atomically(Path(path), lambda tmp: faiss.write_index(index, tmp))


def load_index(path: Path, batch_search: bool = False) -> faiss.Index:
    """The saved (CPU) index; with `batch_search`, a GPU copy where FAISS has a GPU and can hold this kind of
    index (`on_gpu`), for the many-query searches of predict and the kNN head."""
    if not Path(path).is_file():
        raise SnakewebError(f"No index at {path}; run `python -m pipelines index --store {shell_word(Path(path).parent)}`.")
    index = faiss.read_index(str(path))
    return on_gpu(index) if batch_search else index


def gpu_count() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu, or with SNAKEWEB_FAISS_GPU=0."""
    if os.environ.get("SNAKEWEB_FAISS_GPU") == "0":
        return 0
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def on_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of `index` on GPU 0 with the same ids (the id map is cloned with it), or `index` itself without a
    GPU, or where FAISS's GPU code holds no such index (fast-scan PQ and its refinement stay on the CPU)."""
    if not gpu_count():
        return index
    try:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    except RuntimeError as exc:  # FAISS says "not supported" for index kinds it has no GPU version of
        log.info("FAISS keeps this index on the CPU (%s)", str(exc).splitlines()[0][:120])
        return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, image ids), each [n, k]; missing neighbours have id -1."""
    k = max(1, min(k, index.ntotal))
    return index.search(np.ascontiguousarray(l2_normalise(queries)), k)
