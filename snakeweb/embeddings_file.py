"""An embeddings Parquet file as import-embeddings reads it: opened once (every pass and the sha256 read the one
handle, so a file replaced meanwhile cannot slip in), its columns checked against the layout and the model before
any row is read, then read in batches of about one batch's memory, its vectors checked as they are read.
The layout is in snakeweb.embeddings_io's docstring."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from snakeweb.digests import update_with_file
from snakeweb.ingest import METADATA_COLUMNS
from snakeweb.tables import Column, Table, TableError, header_names

WHAT = "embeddings file"
META_KEY = b"snakeweb"  # Parquet file metadata: model, fingerprint, feature kind and dimension of the vectors
MAX_SHOWN = 3
READ_BUFFER = 1 << 23  # bytes: column chunks are read through an 8 MB buffer, not whole row groups at once
COLUMNS = (
    Column("image_id", ("id",)),
    *(replace(c, required=False) if c.name == "image_path" else c for c in METADATA_COLUMNS if c.name != "binomial_name"),
    Column("vector", ("embedding", "embeddings", "features", "feature", "vectors"), required=True),
)


@dataclass
class Source:
    path: Path
    columns: dict[str, str]  # canonical name -> the file's column name
    rows: int
    sha256: str
    # the file opened once: every pass and the sha256 read the same bytes, even when the path is replaced meanwhile
    handle: Any = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info) -> None:
        self.handle.close()


def open_source(path: Path, dim: int, described: str, fingerprint: str, feature_kind: str) -> Source:
    """The file's columns checked against the layout and the model, before any row is read."""
    import pyarrow as pa

    if path.is_dir():
        raise TableError(f"The {WHAT} {path} is a folder; give the Parquet files in it (e.g. {path}/*.parquet).")
    if not path.is_file():
        raise TableError(f"Cannot read the {WHAT} {path}: there is no such file.")
    try:
        handle = pa.OSFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"Cannot read the {WHAT} {path} ({exc}); check that you may read it.") from exc
    try:
        return _checked_source(path, handle, dim, described, fingerprint, feature_kind)
    except BaseException:
        handle.close()
        raise


def _checked_source(path: Path, handle, dim: int, described: str, fingerprint: str, feature_kind: str) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"The {WHAT} {path} is not a Parquet file pyarrow can read; write the vectors as Parquet "
                         "(pyarrow, pandas, Spark or DuckDB).") from exc
    schema = parquet.schema_arrow
    columns = header_names(path, WHAT, schema.names, COLUMNS)
    if "image_path" not in columns and "image_id" not in columns:
        raise TableError(f"The {WHAT} {path}: it has neither a path nor an image_id column; give one of them "
                         f"(its columns are {schema.names}).")
    vector = schema.field(columns["vector"]).type
    listed = pa.types.is_list(vector) or pa.types.is_large_list(vector) or pa.types.is_fixed_size_list(vector)
    if not listed or not pa.types.is_floating(vector.value_type):
        raise TableError(f"The {WHAT} {path}: its column {columns['vector']} holds {vector}, not a list of floats; "
                         "store each vector as a list (or fixed-size list) of float32.")
    if pa.types.is_fixed_size_list(vector) and vector.list_size != dim:
        raise TableError(f"The {WHAT} {path}: its vectors are {vector.list_size}-d but {described}; name the model "
                         "that made them with --model (and --features).")
    if parquet.metadata.num_rows == 0:
        raise TableError(f"The {WHAT} {path} has its columns but no rows; write the vectors into it, or leave the file out.")
    recorded = json.loads(schema.metadata[META_KEY]) if schema.metadata and META_KEY in schema.metadata else {}
    made_by = (recorded.get("fingerprint"), recorded.get("feature_kind"))
    if recorded and made_by != (fingerprint, feature_kind):
        raise TableError(f"The {WHAT} {path} was exported from a store embedded with {made_by[0]} ({made_by[1]}) but "
                         f"you named {fingerprint} ({feature_kind}); name the model that made the vectors with --model.")
    handle.seek(0)
    return Source(path, columns, parquet.metadata.num_rows, update_with_file(hashlib.sha256(), handle).hexdigest(), handle)


def at(rows: np.ndarray, shown: list[str] | None = None) -> str:
    """'row 4: 47 values, row 9: 0 values and 5 more' (rows counted from 1)."""
    text = ", ".join(f"row {r}" + (f": {s}" if shown else "") for r, s in zip(rows[:MAX_SHOWN], shown or [""] * MAX_SHOWN))
    return text + (f" and {len(rows) - MAX_SHOWN} more" if len(rows) > MAX_SHOWN else "")


def batches(source: Source, batch_rows: int, columns: list[str]):
    """Record batches of `batch_rows` rows of `columns`, holding about one batch in memory. pyarrow's default
    (pre_buffer) loads each row group's column chunks whole: a file written in 20,000-row groups of 3840-d vectors
    held ~1 GB per group, which its allocator then kept for the rest of the import. Raises TableError when the
    file can no longer be read (cut short or rewritten in place while the import runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source.handle, pre_buffer=False, buffer_size=READ_BUFFER)
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TableError(f"The {WHAT} {source.path} could not be read to the end ({reason}); if it was being written or "
                         "changed, import it again once it is complete.") from exc


def checked_vectors(source: Source, plan: dict[str, np.ndarray], dim: int, described: str, batch_rows: int,
                    done: Callable[[int], Any] = lambda rows: None):
    """The file's vectors, batch by batch, checked (nulls, length, NaN/inf, as float32; TableError naming the first
    rows) and paired with the image ids `_write` planned: Arrow batches (image_id int64, vector fixed-size list of
    float32) of the rows to store. One batch in memory at a time; `done(rows)` once each batch is checked (rows
    read, stored or not: the progress bar)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    first = 1
    fail = Table(source.path, WHAT, pd.DataFrame(), np.zeros(0, np.int64)).fail
    for batch in batches(source, batch_rows, [source.columns["vector"]]):
        n, lines = batch.num_rows, np.arange(first, first + batch.num_rows)
        first += n
        vectors = batch.column(0)
        if vectors.null_count:
            raise fail(f"{vectors.null_count} row(s) have no vector ({at(lines[vectors.is_null().to_numpy(zero_copy_only=False)])}); "
                       "give every row its vector or leave those rows out.")
        if not pa.types.is_fixed_size_list(vectors.type):
            lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
            wrong = lengths != dim
            if wrong.any():
                shown = at(lines[wrong], [f"{v} values" for v in lengths[wrong]])
                raise fail(f"{int(wrong.sum())} row(s) have vectors of another length ({shown}) but {described}; name the model "
                           "that made them with --model (and --features).")
        matrix = np.asarray(vectors.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, dim)
        broken = ~np.isfinite(matrix).all(axis=1)
        if broken.any():
            raise fail(f"{int(broken.sum())} row(s) have NaN, infinite or missing values in their vector ({at(lines[broken])}); "
                       "recompute or leave out those rows.")
        keep = plan["store"][lines - 1]
        done(n)
        if keep.any():
            kept = np.ascontiguousarray(matrix[keep])
            yield pa.record_batch({"image_id": plan["image_id"][lines - 1][keep],
                                   "vector": pa.FixedSizeListArray.from_arrays(kept.ravel(), dim)})
