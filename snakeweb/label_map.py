"""Class ids <-> a head's output indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelMap:
    """Class ids (any integers, sorted) <-> head output indices 0..K-1."""

    class_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if list(self.class_ids) != sorted(set(self.class_ids)):
            raise ValueError("LabelMap class ids must be unique and sorted")

    @classmethod
    def from_labels(cls, class_ids: Iterable[int]) -> LabelMap:
        return cls(tuple(sorted({int(c) for c in class_ids})))

    def __len__(self) -> int:
        return len(self.class_ids)

    def to_indices(self, class_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Head indices of class ids; an id the head was not trained on is an error, never a silent guess."""
        lookup = np.asarray(self.class_ids, dtype=np.int64)
        ids = np.asarray(class_ids, dtype=np.int64)
        positions = np.searchsorted(lookup, ids)
        positions = np.clip(positions, 0, len(lookup) - 1)
        bad = lookup[positions] != ids
        if bad.any():
            raise KeyError(f"class ids not in this label map: {sorted(set(ids[bad].tolist()))[:10]}")
        return positions.astype(np.int64)

    def to_class_ids(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Class ids of head output indices."""
        return np.asarray(self.class_ids, dtype=np.int64)[np.asarray(indices, dtype=np.int64)]

    def to_json(self) -> list[int]:
        return list(self.class_ids)

    @classmethod
    def from_json(cls, data: Sequence[int]) -> LabelMap:
        return cls(tuple(int(c) for c in data))
