"""snakeweb.vectors: a saved index read without FAISS (ids, dimension, kind; an exact index's vectors) and searched
in NumPy with FAISS's results; a damaged file is refused, never half-read."""

import numpy as np
import pytest

from snakeweb.errors import SnakewebError
from snakeweb.index import IndexSpec, build_index, index_ids, save_index, selector_parameters
from snakeweb.vectors import FlatIndex, l2_normalise, open_index, read_index_file, restrict


def data(n=300, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.permutation(10**6)[:n].astype(np.int64), rng.normal(size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize("spec", [IndexSpec("Flat"), IndexSpec("IVF8,SQ8", nprobe=4),
                                  IndexSpec("IVF8,PQ4x4fs,Refine(SQ8)", nprobe=4, k_factor=4)])
def test_the_file_gives_faiss_ids_and_dimension_without_faiss(spec, tmp_path):
    ids, x = data()
    index = build_index(ids, x, spec)
    save_index(index, tmp_path / "index.faiss")
    saved = read_index_file(tmp_path / "index.faiss")
    assert saved.dim == 24 and np.array_equal(saved.ids, index_ids(index)) and saved.exact == (spec.factory == "Flat")
    if saved.exact:
        assert np.array_equal(saved.vectors(), l2_normalise(x))  # what FAISS stored: the normalised vectors
        assert isinstance(open_index(tmp_path / "index.faiss"), FlatIndex)
    else:  # an approximate index is searched by FAISS itself
        assert not isinstance(open_index(tmp_path / "index.faiss"), FlatIndex)


def test_flat_search_gives_faiss_results_and_restricts_like_its_selector(tmp_path):
    ids, x = data()
    faiss_index = build_index(ids, x)
    save_index(faiss_index, tmp_path / "index.faiss")
    numpy_index = open_index(tmp_path / "index.faiss")
    queries = l2_normalise(data(50, seed=1)[1])
    for k in (1, 10, 300, 305):  # 305 > ntotal: FAISS pads with id -1
        sims, found = numpy_index.search(queries, k)
        faiss_sims, faiss_found = faiss_index.search(queries, k)
        assert np.array_equal(found, faiss_found) and np.allclose(sims, faiss_sims, atol=1e-5)
    allowed = ids[::3]
    sims, found = restrict(numpy_index, allowed).search(queries, 8)
    faiss_sims, faiss_found = faiss_index.search(queries, 8, params=selector_parameters(faiss_index, allowed))
    assert np.array_equal(found, faiss_found) and np.allclose(sims, faiss_sims, atol=1e-5)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    assert numpy_index.search(queries[:0], 5)[1].shape == (0, 5)


def test_damaged_or_foreign_index_files_are_refused(tmp_path):
    ids, x = data(40, 8)
    for spec in (IndexSpec("Flat"), IndexSpec("IVF4,SQ8", nprobe=2)):
        path = tmp_path / f"{spec.factory}.faiss"
        save_index(build_index(ids, x, spec), path)
        data_ = path.read_bytes()
        cases = {"cut": data_[:-5], "cut in the header": data_[:20], "empty": b"", "grown": data_ + b"\0" * 8,
                 "not an id map": b"IxFI" + data_[4:], "text": b"ntotal, dim and ids are not here" * 4}
        if spec.factory == "Flat":
            cases["short vectors"] = data_[:80] + data_[84:]
        for damaged in cases.values():
            (tmp_path / "bad.faiss").write_bytes(damaged)
            with pytest.raises(SnakewebError, match="index"):
                read_index_file(tmp_path / "bad.faiss")
    with pytest.raises(SnakewebError, match="No index at"):
        read_index_file(tmp_path / "missing.faiss")


def test_l2_normalise_gives_unit_rows_in_place_when_asked_and_keeps_zero_rows_zero():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 384)).astype(np.float32) * rng.uniform(0.01, 100, size=(50, 1)).astype(np.float32)
    vectors[7] = 0
    expected = vectors / np.maximum(np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True), 1e-12)
    copied = l2_normalise(vectors)
    assert copied is not vectors and not np.allclose(vectors[0], copied[0])  # the input is left as it was
    np.testing.assert_allclose(copied, expected, atol=1e-6)
    assert not copied[7].any() and np.allclose(np.linalg.norm(np.delete(copied, 7, axis=0), axis=1), 1, atol=1e-6)
    same = l2_normalise(vectors, in_place=True)
    assert np.shares_memory(same, vectors) and np.array_equal(same, copied)
    # an index built with overwrite (the index stage's own copy of the vectors) is the index built from a copy
    ids, raw, queries = np.arange(100, 150), rng.normal(size=(50, 384)).astype(np.float32) + 1, rng.normal(size=(5, 384)).astype(np.float32)
    kept = raw.copy()
    from_copy = build_index(ids, raw).search(l2_normalise(queries), 10)
    assert np.array_equal(raw, kept)
    in_place = build_index(ids, raw, overwrite=True).search(l2_normalise(queries), 10)
    assert np.array_equal(in_place[1], from_copy[1]) and np.allclose(in_place[0], from_copy[0])
    assert np.array_equal(raw, l2_normalise(kept))
