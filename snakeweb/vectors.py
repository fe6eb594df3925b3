"""Vectors with NumPy only: L2 normalisation, a saved index read without FAISS, and exact search in NumPy.

The quick commands (`check`, `export`) import this and never FAISS. `read_index_file` reads what an
`index.faiss` holds from its bytes: the dimension, the count and the image ids (an `IndexIDMap2` writes its id
map last), and for an exact index (`IndexFlatIP`, every store up to snakeweb.index.EXACT_UP_TO_FLOATS) the
stored vectors too, so `open_index` searches those with one matrix product, as FAISS's flat index does. Other
kinds (IVF over PQ codes, for large stores) are opened with FAISS by `snakeweb.index.load_index`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snakeweb.errors import SnakewebError, shell_word

# faiss/impl/index_write.cpp: an index is a fourcc then `write_index_header` (d int32, ntotal int64, two dummy
# int64, is_trained bool, metric_type int32, and a float32 metric_arg when metric_type > 1); IndexIDMap2 ("IxM2")
# writes its header, the inner index, then its id map as a vector (uint64 size, then int64 ids); IndexFlatIP
# ("IxFI") writes its header then its vectors (uint64 number of floats, then float32 rows).
IDMAP2, FLAT_IP = b"IxM2", b"IxFI"
_HEADER = struct.Struct("<iqqq?i")
_METRIC_ARG = struct.Struct("<f")
_SIZE = struct.Struct("<Q")
MISSING_SIMILARITY = np.float32(-np.finfo(np.float32).max)  # what FAISS returns (with id -1) for a missing neighbour
SEARCH_BLOCK_FLOATS = 1 << 24  # similarities computed per block of queries (64 MB)


def l2_normalise(vectors: np.ndarray, in_place: bool = False) -> np.ndarray:
    """float32 rows of `vectors` [..., D] scaled to unit length (a zero row stays zero). The norms come from one
    dot product per row, without the [n, D] temporary of np.linalg.norm (2.8 GB for 182k x 3840); with `in_place`
    (a float32 array the caller no longer needs as it was) no second [n, D] array is made either."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("...i,...i->...", vectors, vectors))[..., None]
    return np.divide(vectors, np.maximum(norms, np.float32(1e-12)), out=vectors if in_place else None)


def ids_digest(image_ids: np.ndarray) -> str:
    """A short digest of the sorted id set, recorded in the store to check index/DuckDB agreement."""
    return hashlib.sha256(np.sort(np.asarray(image_ids, dtype=np.int64)).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class IndexFile:
    """What a saved snakeweb index holds, read from its bytes."""

    path: Path
    kind: str  # the inner index's FAISS fourcc: "IxFI" exact inner product; others (IVF, refine, ...) approximate
    dim: int
    ids: np.ndarray  # int64, in stored order
    vectors_at: int | None  # byte offset of the exact index's float32 rows; None for other kinds

    @property
    def exact(self) -> bool:
        return self.vectors_at is not None

    def vectors(self) -> np.ndarray:
        """The stored (L2-normalised) vectors of an exact index, [count, dim] float32."""
        if self.vectors_at is None:
            raise ValueError(f"{self.path} is a {self.kind} index: its vectors are codes only FAISS reads")
        with open(self.path, "rb") as f:
            f.seek(self.vectors_at)
            return np.fromfile(f, dtype="<f4", count=len(self.ids) * self.dim).reshape(len(self.ids), self.dim)


def _header(data: bytes, at: int, path: Path) -> tuple[bytes, int, int, int]:
    """(fourcc, d, ntotal, offset after the header) of the index written at `at`."""
    if len(data) < at + 4 + _HEADER.size:
        raise SnakewebError(f"The index {path} is truncated; run `python -m pipelines index --store {shell_word(path.parent)} --force`.")
    fourcc = data[at:at + 4]
    d, ntotal, _, _, _, metric = _HEADER.unpack_from(data, at + 4)
    return fourcc, d, ntotal, at + 4 + _HEADER.size + (_METRIC_ARG.size if metric > 1 else 0)


def read_index_file(path: Path) -> IndexFile:
    """The dimension, ids and kind of a saved index, without FAISS. Raises SnakewebError when the file is missing,
    is not an id-mapped FAISS index, or is cut short or inconsistent (its id map is not where its header says)."""
    path = Path(path)
    if not path.is_file():
        raise SnakewebError(f"No index at {path}; run `python -m pipelines index --store {shell_word(path.parent)}`.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(2 * (4 + _HEADER.size + _METRIC_ARG.size) + _SIZE.size)
        fourcc, dim, count, inner_at = _header(start, 0, path)
        redo = f"; run `python -m pipelines index --store {shell_word(path.parent)} --force`."
        if fourcc != IDMAP2:
            raise SnakewebError(f"The index {path} is not a snakeweb index (an id-mapped FAISS index){redo}")
        kind, inner_dim, inner_count, body_at = _header(start, inner_at, path)
        if dim <= 0 or count < 0 or (inner_dim, inner_count) != (dim, count):
            raise SnakewebError(f"The index {path} is corrupt (its headers disagree: {dim}-d x {count} vs "
                                f"{inner_dim}-d x {inner_count}){redo}")
        ids_at = size - 8 * count
        if ids_at - _SIZE.size < body_at:
            raise SnakewebError(f"The index {path} is truncated ({size} bytes for {count} ids){redo}")
        f.seek(ids_at - _SIZE.size)
        (stored,) = _SIZE.unpack(f.read(_SIZE.size))
        if stored != count:
            raise SnakewebError(f"The index {path} is truncated or corrupt (its id map is not at its end){redo}")
        ids = np.fromfile(f, dtype="<i8", count=count).astype(np.int64)
        vectors_at = None
        if kind == FLAT_IP:
            (floats,) = _SIZE.unpack_from(start, body_at)
            vectors_at = body_at + _SIZE.size
            if floats != count * dim or vectors_at + 4 * floats + _SIZE.size != ids_at:
                raise SnakewebError(f"The index {path} is corrupt (its vectors do not fill it){redo}")
    return IndexFile(path, kind.decode("ascii", "replace"), int(dim), ids, vectors_at)


class FlatIndex:
    """Exact inner-product search over L2-normalised vectors keyed by image id: what FAISS's
    IndexIDMap2(IndexFlatIP) does (a matrix product and a top-k), with its `search` signature and results."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.ids):
            raise ValueError("one id per vector")

    @property
    def d(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, image ids), each [n, k], best first; missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        sims = np.full((len(queries), k), MISSING_SIMILARITY, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        take = min(int(k), self.ntotal)
        if take == 0:
            return sims, found
        rows = max(1, SEARCH_BLOCK_FLOATS // self.ntotal)
        for start in range(0, len(queries), rows):
            block = queries[start:start + rows] @ self.vectors.T
            best = np.argpartition(-block, take - 1, axis=1)[:, :take] if take < self.ntotal else np.tile(
                np.arange(self.ntotal), (len(block), 1))
            top = np.take_along_axis(block, best, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            sims[start:start + rows, :take] = np.take_along_axis(top, order, axis=1)
            found[start:start + rows, :take] = self.ids[np.take_along_axis(best, order, axis=1)]
        return sims, found

    def restricted(self, allowed_ids: np.ndarray) -> FlatIndex:
        """The same index over the images `allowed_ids` only."""
        keep = np.isin(self.ids, np.asarray(allowed_ids, dtype=np.int64))
        return FlatIndex(self.ids[keep], self.vectors[keep])


class _Restricted:
    """A FAISS index searched among some image ids only (snakeweb.index.selector_parameters)."""

    def __init__(self, index, allowed_ids: np.ndarray):
        from snakeweb.index import selector_parameters

        self.index, self.params = index, selector_parameters(index, allowed_ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k, params=self.params)


def open_index(path: Path, batch_search: bool = False):
    """A saved index to search: a `FlatIndex` (NumPy, no FAISS) when it is exact, else FAISS's index
    (snakeweb.index.load_index, with `batch_search` as there). Both take `search(normalised queries, k)`."""
    info = read_index_file(path)
    if info.exact:
        return FlatIndex(info.ids, info.vectors())
    from snakeweb.index import load_index

    return load_index(path, batch_search=batch_search)


def restrict(index, allowed_ids: np.ndarray):
    """`index` (from `open_index`) searched among the images `allowed_ids` only."""
    return index.restricted(allowed_ids) if isinstance(index, FlatIndex) else _Restricted(index, allowed_ids)
