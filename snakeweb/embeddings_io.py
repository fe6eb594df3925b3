"""Bring your own embeddings: vectors computed elsewhere (on a cluster, by the seed paper's Spark/Petastorm
pipeline, in another snakeweb store) go into a store as ingest + embed would put them there, and a store's vectors
come out, in one Parquet layout, one row per image:

    image_id int64 | path string | observation_id string | class_id int64 | split string | country string |
    vector fixed_size_list<float32>[D]        (file metadata b"snakeweb": JSON with the model and feature kind)

An import also takes `vector` as a list of float16/32/64, the headers' usual aliases (as every table snakeweb
reads, `snakeweb.tables`), and either `path` or `image_id` alone; class_id, split and country may be left out.
Values are read by ingest's rules (class ids, observation ids, subsets, countries). Both directions stream:
an import reads each file through one open handle (snakeweb.embeddings_file) in batches with pyarrow (never a
Python list per vector), and DuckDB takes the checked vectors from an Arrow stream in one statement; the export
writes DuckDB's Arrow batches. An import is one transaction: a refusal (one sentence naming the file, the first
rows and how many) leaves the store as it was, and a store it created is removed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from snakeweb.embeddings_file import MAX_SHOWN, META_KEY, WHAT, Source, at, batches, checked_vectors, open_source
from snakeweb.errors import SnakewebError
from snakeweb.ingest import checked_country_table, country_codes, record_numbered_ids, record_species
from snakeweb.outputs import refuse_a_store_file, write_atomically
from snakeweb.paths import Spellings, same_file_groups
from snakeweb.progress import tqdm
from snakeweb.species import combine_with_store
from snakeweb.splits import read_subsets, split_of, update_splits
from snakeweb.store import Store, set_meta
from snakeweb.tables import Table, TableError
from snakeweb.taxonomy import Taxonomy, species_as_flagged, taxonomy_path

IMPORTS_KEY = "embedding_imports"  # run metadata: one record per import (files, sha256, rows, when)
FLOATS_PER_BATCH = 2**22  # rows per batch = this / D: 16 MB of float32 per batch whatever the dimension
STAGING = """CREATE TABLE _import_staging (file INTEGER, row BIGINT, given_id BIGINT, path VARCHAR, observation_id VARCHAR,
    class_id BIGINT, country_code VARCHAR, subset VARCHAR)"""
METADATA_BATCH_ROWS = 1 << 16


def import_embeddings(store: Store, files: Sequence[Path], model: str, feature_kind: str | None = None, tta: str | None = None,
                      species_table: pd.DataFrame | None = None, taxonomy: Path | None = None,
                      batch_rows: int | None = None, country_table: Path | None = None) -> dict[str, Any]:
    """Add the vectors of Parquet `files` (layout in the module docstring) to `store`, creating it when absent: image
    and observation rows (status 'ok', decoder 'imported'), embeddings, splits by ingest's rules, and run metadata
    `model`/`feature_kind`/`feature_dim` as the embed stage records them plus an `embedding_imports` record (files,
    sha256, rows, time). `model` (a registry name, concat:A+B or a folder; not auto) must be the model that made the
    vectors: it is loaded for its fingerprint and its `feature_kind` dimension D (default: its first kind).
    Rows whose path is already in the store keep their image; pending ones get the vector. `species_table` (from
    `read_species_table`) and `taxonomy` (default $SNAKEWEB_TAXONOMY) are taken as ingest takes them, and so is
    `country_table` (Species_Relevance.csv: checked against the species now, recorded for predict, evaluate, identify and
    the pages). `batch_rows` defaults to 2**22 / D.

    Returns counts: rows, added (vectors stored), new_images, already_present, rejected (store rows in error),
    dim, feature_kind, fingerprint, families (a line to print, or ""). Raises SnakewebError (TableError for a file)
    with one sentence for: auto or an unknown model, a vector dimension other than D, a file exported from another
    model, missing columns (naming those the file has), null/NaN/inf vectors, repeated paths or image ids, values
    ingest refuses (class ids, subsets, countries, empty observation ids), one observation given two classes,
    countries or splits, relabelled store photos, class ids the species table lacks (or no species table), and
    a store already holding vectors of another model. Nothing is written then."""
    from snakeweb.embed_stage import record_model
    from snakeweb.models import load_backbone, resolve_model

    if model == "auto":
        raise SnakewebError("--model auto picks a model by what is installed; name the model that made the vectors "
                            "(a registry name such as dinov2-base, concat:A+B or a model folder).")
    config = resolve_model(model)
    config = replace(config, tta=tta) if tta else config
    backbone = load_backbone(config)
    feature_kind = feature_kind or config.feature_kinds[0]
    backbone.check_feature_kind(feature_kind)
    dim = backbone.feature_dim(feature_kind)
    described = f"{config.name} ({backbone.fingerprint}) gives {dim}-d {feature_kind} features"
    _refuse_other_model(store, backbone.fingerprint, feature_kind)
    seen: dict[Path, Path] = {}
    for f in map(Path, files):  # one file named twice would be read twice: every row "repeated"
        twice = seen.setdefault(f.resolve(), f)
        if twice is not f:
            raise TableError(f"The {WHAT} {f} is given twice" + (f" (also as {twice})" if str(twice) != str(f) else "")
                             + "; give each file once.")
    with contextlib.ExitStack() as opened:  # each file read through its one handle, closed however the import ends
        sources = [opened.enter_context(open_source(Path(f), dim, described, backbone.fingerprint, feature_kind)) for f in files]
        combined = combine_with_store(species_as_flagged(store), species_table)
        if country_table is not None:
            if combined is None:
                raise SnakewebError("--country-table needs the species: give --species (e.g. class_list.csv) with it.")
            checked_country_table(country_table, combined)
        taxonomy = taxonomy_path(taxonomy)
        taxa = Taxonomy.from_csv(taxonomy) if taxonomy is not None else None
        batch_rows = batch_rows or max(1, FLOATS_PER_BATCH // dim)
        created_root, created_db = not store.root.exists(), not store.exists()
        try:
            store.create() if created_db else store.require()
            with store.transaction() as con:
                families = record_species(con, combined, taxa) if combined is not None else ""
                if species_table is not None and combined is not None:
                    record_numbered_ids(con, combined, species_table)
                con.execute(STAGING)
                spellings = Spellings(con.execute("SELECT path FROM images").fetchnumpy()["path"])
                total = sum(s.rows for s in sources)
                with tqdm(total=total, desc="import: check rows", unit="row") as bar:
                    for number, source in enumerate(sources):  # first pass: every column but the vectors
                        _stage(con, source, number, spellings, bar.update)
                counts = _write(con, [s.path.name for s in sources])
                with tqdm(total=total, desc="import: store vectors", unit="row") as bar:
                    for number, source in enumerate(sources):  # second pass: the vectors, checked as DuckDB streams them in
                        _insert_vectors(con, source, number, dim, described, batch_rows, bar.update)
                record_model(con, backbone, feature_kind)
                if country_table is not None:
                    set_meta(con, "country_table", str(Path(country_table).resolve()))
                if not con.execute("SELECT count(*) FROM run_metadata WHERE key = 'train_views'").fetchone()[0]:
                    set_meta(con, "train_views", [])  # imported vectors come without augmented views of their photos
                record = {"files": [{"path": str(s.path.resolve()), "sha256": s.sha256, "rows": s.rows} for s in sources],
                          "imported_at": datetime.now(UTC).isoformat(timespec="seconds"), "fingerprint": backbone.fingerprint,
                          "feature_kind": feature_kind, "rows": counts["rows"], "added": counts["added"]}
                previous = con.execute("SELECT value FROM run_metadata WHERE key = ?", [IMPORTS_KEY]).fetchall()
                set_meta(con, IMPORTS_KEY, (json.loads(previous[0][0]) if previous else []) + [record])
                if not con.execute("SELECT count(*) FROM run_metadata WHERE key = 'source'").fetchone()[0]:
                    set_meta(con, "source", {"kind": "imported embeddings", "files": record["files"]})
                con.execute("DROP TABLE _import_staging")
                con.execute("DROP TABLE _import_plan")
        except BaseException:
            if created_root:  # a refused import into a new store leaves no store behind
                shutil.rmtree(store.root, ignore_errors=True)
            elif created_db and store.root.is_dir():
                for path in (store.db_path, store.db_path.with_name(store.db_path.name + ".wal")):
                    path.unlink(missing_ok=True)
            raise
        return {**counts, "dim": dim, "feature_kind": feature_kind, "fingerprint": backbone.fingerprint, "model": config.name,
                "families": families if (species_table is not None or taxa is not None) else ""}


def _refuse_other_model(store: Store, fingerprint: str, feature_kind: str) -> None:
    if not store.exists():
        return
    store.require()
    recorded, kind = store.get_meta("model"), store.get_meta("feature_kind")
    held = int(store.query("SELECT count(*) AS n FROM embeddings")["n"][0])
    if held and recorded is not None and (recorded["fingerprint"], kind) != (fingerprint, feature_kind):
        raise SnakewebError(f"The store {store.root} holds {held} embeddings of {recorded['fingerprint']} ({kind}) but these "
                            f"vectors are {fingerprint} ({feature_kind}); one store holds one model's vectors: import into "
                            "another --store.")


def _stage(con, source: Source, number: int, spellings: Spellings, done: Callable[[int], Any]) -> None:
    """First pass over one file: every column but the vector, batch by batch into _import_staging, each batch's values
    checked by ingest's rules; `done(rows)` after each batch (the progress bar)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    first = 1
    columns = {name: column for name, column in source.columns.items() if name != "vector"}
    for batch in batches(source, METADATA_BATCH_ROWS, list(columns.values())):
        lines = np.arange(first, first + batch.num_rows)
        first += batch.num_rows
        text = {}
        for name, column in columns.items():
            try:
                values = pc.utf8_trim_whitespace(pc.cast(batch.column(column), pa.string()))
            except pa.ArrowException as exc:
                raise TableError(f"The {WHAT} {source.path}: its column {column} holds {batch.column(column).type}, which "
                                 f"snakeweb cannot read as {name}.") from exc
            text[name] = values.fill_null("").to_numpy(zero_copy_only=False)
        table = Table(source.path, WHAT, pd.DataFrame(text, index=pd.RangeIndex(batch.num_rows), dtype=object), lines, unit="row")
        con.register("_import_batch", pa.table({"file": np.full(batch.num_rows, number, np.int32), "row": lines,
                                                **_metadata(table, spellings)}))
        con.execute("INSERT INTO _import_staging SELECT file, row, given_id, path, observation_id, class_id, country_code, subset "
                    "FROM _import_batch")
        con.unregister("_import_batch")
        done(batch.num_rows)


def _insert_vectors(con, source: Source, number: int, dim: int, described: str, batch_rows: int,
                    done: Callable[[int], Any]) -> None:
    """Second pass over one file: its vectors checked and written to `embeddings` under the image ids `_write`
    planned, as float32 lists (as the embed stage writes them), in one INSERT that DuckDB streams from an Arrow
    reader of the checked batches. One statement, not one per batch, because DuckDB writes a large single append
    to the store file as it goes (optimistic writing), while many small appends stay in memory until the commit: a
    182k x 3840 import held 7.9 GB that way. The file is read through its one open handle, never by name again:
    DuckDB's read_parquet took a name with [ ] or * as a pattern (another file's vectors), and a file replaced
    between two reads went in unchecked."""
    import duckdb
    import pyarrow as pa

    plan = con.execute("SELECT row, image_id, target IN ('new', 'pending') AS store FROM _import_plan WHERE file = ? ORDER BY row",
                       [number]).fetchnumpy()
    rows = np.asarray(plan["row"], np.int64)
    if not np.array_equal(rows, np.arange(1, source.rows + 1)):
        raise RuntimeError(f"the import plan of {source.path} does not cover its rows")  # _write plans every row
    plan = {"image_id": np.asarray(plan["image_id"], np.int64), "store": np.asarray(plan["store"], bool)}
    raised: list[BaseException] = []

    def remembering_a_refusal():
        try:
            yield from checked_vectors(source, plan, dim, described, batch_rows, done)
        except BaseException as exc:  # DuckDB reports it as its own error: raised again below as it was
            raised.append(exc)
            raise

    schema = pa.schema({"image_id": pa.int64(), "vector": pa.list_(pa.float32(), dim)})
    con.register("_import_vectors", pa.RecordBatchReader.from_batches(schema, remembering_a_refusal()))
    try:
        con.execute("INSERT INTO embeddings SELECT image_id, vector::FLOAT[] FROM _import_vectors")  # (no ON CONFLICT: 2x faster)
    except duckdb.Error:
        if raised:
            raise raised[0] from None
        raise
    finally:
        with contextlib.suppress(duckdb.Error):  # after a refusal the transaction is aborted, and says so here too
            con.unregister("_import_vectors")


def _metadata(table: Table, spellings: Spellings) -> dict[str, Any]:
    """One batch's columns other than the vector, read by ingest's rules (as pyarrow arrays); each path as the store
    spells it (`snakeweb.paths`: one photo keeps one path however it is written)."""
    import pyarrow as pa

    observations = table.identifiers("observation_id")
    empty = observations.eq("").to_numpy(bool)
    if empty.any():
        raise table.fail(f"{int(empty.sum())} row(s) have no observation_id ({at(table.lines[empty])}); fill them in.")
    none = pd.Series(pd.NA, index=table.frame.index, dtype="Int64")
    class_ids = table.ids("class_id", missing_ok=True) if table.has("class_id") else none
    given = table.ids("image_id", missing_ok=True, what="image ids") if table.has("image_id") else none
    paths = table.text("image_path") if table.has("image_path") else pd.Series(None, index=table.frame.index, dtype=object)
    named = paths.notna()
    paths[named] = spellings(paths[named])
    nameless = (paths.isna() & given.isna()).to_numpy(bool)
    if nameless.any():
        raise table.fail(f"{int(nameless.sum())} row(s) have neither a path nor an image_id ({at(table.lines[nameless])}); "
                         "give each row one of them.")
    subsets = None
    if table.has("subset"):  # what export-embeddings writes for photos without a label, read as no subset
        table.frame.loc[table.frame["subset"].str.lower().eq("unlabelled") & class_ids.isna(), "subset"] = ""
        subsets = read_subsets(table).map(split_of)  # the split each names: 'train' and 'train-hm' are one split
    countries = country_codes(table)
    return {
        "given_id": pa.Array.from_pandas(given), "path": pa.array(paths, pa.string(), from_pandas=True),
        "observation_id": pa.array(observations, pa.string()), "class_id": pa.Array.from_pandas(class_ids),
        "country_code": pa.array(countries if countries is not None else [None] * len(table), pa.string()),
        "subset": pa.array(subsets if subsets is not None else [None] * len(table), pa.string(), from_pandas=True),
    }


def _refuse(con, names: list[str], where: str, message: str, order: str = "file, row") -> None:
    """Raise `message` with '{rows}' filled in ('a.parquet row 4, b.parquet row 9 and 3 more') when staged rows
    match `where`; the rows shown are the first in `order`."""
    n = con.execute(f"SELECT count(*) FROM _import_staging s WHERE {where}").fetchone()[0]
    if not n:
        return
    shown = con.execute(f"SELECT file, row FROM _import_staging s WHERE {where} ORDER BY {order} LIMIT {MAX_SHOWN}").fetchall()
    rows = ", ".join(f"{names[f]} row {r}" for f, r in shown) + (f" and {n - len(shown)} more" if n > len(shown) else "")
    raise TableError(message.format(n=n, rows=rows))


def _refuse_links(con, names: list[str]) -> None:
    """Rows whose paths are two names of one file on this machine (a symbolic or hard link, also to a stored photo):
    the same photo would be stored twice, perhaps as two species or in two splits. Paths that are not files here
    (vectors made elsewhere) are left alone. Raises TableError naming the rows."""
    rows = con.execute("SELECT file, row, path FROM _import_staging WHERE path NOT LIKE 'imported:%' "
                       "UNION ALL SELECT -1, -1, path FROM images").fetchall()
    groups = [[rows[i] for i in members] for members in same_file_groups([path for _, _, path in rows])]
    twice = [group for group in groups if len({p for _, _, p in group}) > 1 and any(f >= 0 for f, _, _ in group)]
    if twice:
        shown = [f"{names[f]} row {r}" if f >= 0 else f"the stored {p}" for f, r, p in twice[0]]
        raise TableError(f"{len(twice)} file(s) are named by more than one path, a link to one photo ({', '.join(shown[:3])}); "
                         "a photo is stored once: give each photo by one path.")


def _write(con, names: list[str]) -> dict[str, int]:
    """Check the staged rows against each other and the store, plan every row's image id and what becomes of it
    (_import_plan: target new, pending, ok or error), then write images, observations and splits."""
    con.execute("UPDATE _import_staging s SET path = i.path FROM images i WHERE s.path IS NULL AND i.image_id = s.given_id")
    con.execute("UPDATE _import_staging SET path = 'imported:' || given_id WHERE path IS NULL")
    repeats = "s.{0} IN (SELECT {0} FROM _import_staging GROUP BY {0} HAVING count(*) > 1)"
    # the rows shown are the first value's repeats together, so a value repeated across two files names both files
    _refuse(con, names, repeats.format("given_id"), "{n} rows share an image_id with another row ({rows}); each image must appear once.",
            "given_id, file, row")
    _refuse(con, names, repeats.format("path"), "{n} rows share an image path with another row ({rows}); each image must appear once.",
            "path, file, row")
    _refuse(con, names, "s.path NOT IN (SELECT path FROM images) AND s.given_id IN (SELECT image_id FROM images)",
            "{n} row(s) give an image_id the store already uses for another photo ({rows}); leave image_id out to have new "
            "ids assigned, or import into another --store.")
    # a row without a class, of an observation stored with one, is that observation's animal: filled before the
    # relabel checks, so the same import run again finds nothing changed
    con.execute("UPDATE _import_staging s SET class_id = o.class_id FROM observations o WHERE s.class_id IS NULL AND "
                "o.observation_id = s.observation_id")
    for differs, what, fix in (
            ("i.observation_id <> s.observation_id", "observation", "give them their stored observation_id"),
            ("i.class_id IS DISTINCT FROM s.class_id", "class id", "correct a class with reviews (the Review page or import-reviews)"),
            ("s.country_code IS NOT NULL AND o.country_code IS DISTINCT FROM s.country_code", "country", "give them their stored country")):
        _refuse(con, names, f"EXISTS (SELECT 1 FROM images i JOIN observations o USING (observation_id) WHERE i.path = s.path AND {differs})",
                "{n} row(s) would give a photo already in the store another " + what + " ({rows}); snakeweb does not relabel "
                "stored photos: " + fix + ", or build a new store.")
    _refuse_links(con, names)
    # (a stored photo given another split was ignored, exit 0; ingest refuses it too)
    _refuse(con, names, "EXISTS (SELECT 1 FROM images i WHERE i.path = s.path AND i.split IN ('train', 'val', 'test') AND "
            "s.subset IS NOT NULL AND s.subset <> i.split)",
            "{n} row(s) would move a photo already in the store to another split ({rows}); snakeweb does not move stored photos "
            "between splits: give them their stored split (or none), or build a new store.")
    for column, what in (("class_id", "class_id"), ("country_code", "country"), ("subset", "split")):
        _refuse(con, names, f"s.observation_id IN (SELECT observation_id FROM _import_staging GROUP BY observation_id "
                f"HAVING count(DISTINCT {column}) > 1)",
                "{n} row(s) give one observation photos with different " + what + " values ({rows}); one observation is one animal.")
    for column, what in (("class_id", "class"), ("country_code", "country")):
        # a stored observation stored without a class or country may not get one either: its stored photos would
        # stay without it (the value was dropped unsaid)
        _refuse(con, names, f"s.{column} IS NOT NULL AND EXISTS (SELECT 1 FROM observations o WHERE o.observation_id = "
                f"s.observation_id AND o.{column} IS DISTINCT FROM s.{column})",
                "{n} row(s) give an observation already in the store another " + what + " than the store has for it, or one it "
                "was stored without ({rows}); one observation is one animal: give those photos their own observation_id, or "
                "correct the " + what + ".")
    for column in ("class_id", "country_code", "subset"):  # each row of an observation takes the value another row gives it
        con.execute(f"UPDATE _import_staging s SET {column} = m.v FROM (SELECT observation_id, max({column}) AS v FROM "
                    f"_import_staging GROUP BY observation_id) m WHERE s.{column} IS NULL AND m.observation_id = s.observation_id")
    if not con.execute("SELECT count(*) FROM species").fetchone()[0]:
        _refuse(con, names, "s.class_id IS NOT NULL", "{n} row(s) have a class_id ({rows}) but the store has no species table "
                "to say which species each is; give one with --species class_list.csv (class_id, binomial_name, venomous or MIVS), "
                "as ingest takes it.")
    _refuse(con, names, "s.class_id IS NOT NULL AND s.class_id NOT IN (SELECT class_id FROM species)",
            "{n} row(s) have a class_id the store's species table does not have ({rows}); add those classes with --species "
            "TABLE, or correct the class ids.")
    from snakeweb.removal import first_free_image_id  # above removed photos' ids too: theirs never name another photo

    base = max(first_free_image_id(con), con.execute("SELECT COALESCE(max(given_id), -1) + 1 FROM _import_staging").fetchall()[0][0])
    con.execute(
        "CREATE TABLE _import_plan AS SELECT s.file, s.row, COALESCE(i.image_id, s.given_id, ? - 1 + row_number() OVER "
        "(PARTITION BY i.image_id IS NULL AND s.given_id IS NULL ORDER BY s.file, s.row)) AS image_id, "
        "COALESCE(i.status, 'new') AS target FROM _import_staging s LEFT JOIN images i ON i.path = s.path", [base])
    joined = "FROM _import_staging s JOIN _import_plan p USING (file, row)"
    con.execute("INSERT INTO images (image_id, observation_id, path, class_id, split, status, decoder) SELECT p.image_id, "
                f"s.observation_id, s.path, s.class_id, 'unassigned', 'ok', 'imported' {joined} WHERE p.target = 'new'")
    con.execute("INSERT INTO observations (observation_id, class_id, country_code, split) SELECT s.observation_id, max(s.class_id), "
                f"max(s.country_code), 'unassigned' {joined} WHERE p.target = 'new' GROUP BY s.observation_id "
                "ON CONFLICT (observation_id) DO NOTHING")
    con.execute("UPDATE images SET status = 'ok', error = NULL, decoder = 'imported' FROM _import_plan p "
                "WHERE images.image_id = p.image_id AND p.target = 'pending'")
    con.execute("DELETE FROM embeddings WHERE image_id IN (SELECT image_id FROM _import_plan WHERE target IN ('new', 'pending'))")
    subsets = con.execute(f"SELECT s.observation_id, max(s.subset) {joined} WHERE p.target = 'new' GROUP BY s.observation_id").fetchall()
    update_splits(con, dict(subsets))
    targets = dict(con.execute("SELECT target, count(*) FROM _import_plan GROUP BY target").fetchall())
    return {"rows": sum(targets.values()), "added": targets.get("new", 0) + targets.get("pending", 0),
            "new_images": targets.get("new", 0), "already_present": targets.get("ok", 0), "rejected": targets.get("error", 0)}


def export_embeddings(store: Store, out: Path, batch_rows: int | None = None) -> dict[str, Any]:
    """Write every embedded image of `store` to the Parquet file `out` (layout in the module docstring; rows ordered
    by image_id, `batch_rows` per DuckDB query and row group, default 2**22 / D), atomically, with file metadata
    b"snakeweb": JSON of the model (config, fingerprint), feature_kind, feature_dim, rows, store_id, exported_at.
    Returns {"rows", "dim", "feature_kind", "fingerprint"}; raises SnakewebError when the store has no embeddings or
    `out` is a store's own file."""
    refuse_a_store_file(Path(out), "vectors.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    store.require()
    model, kind, dim = store.get_meta("model"), store.get_meta("feature_kind"), store.get_meta("feature_dim")
    ids = store.query("SELECT image_id FROM embeddings JOIN images USING (image_id) WHERE status = 'ok' ORDER BY image_id")
    ids = ids["image_id"].to_numpy(np.int64)
    if model is None or not len(ids):
        raise SnakewebError(f"The store {store.root} has no embeddings to export; run `embed` or `import-embeddings` first.")
    if dim is None:  # a store from before feature_dim was recorded
        dim = int(store.query("SELECT len(vector) AS d FROM embeddings WHERE image_id = ?", [int(ids[0])])["d"][0])
    batch_rows = batch_rows or max(1, FLOATS_PER_BATCH // dim)
    facts = {"model": model, "fingerprint": model["fingerprint"], "feature_kind": kind, "feature_dim": dim, "rows": len(ids),
             "store_id": store.get_meta("store_id"), "exported_at": datetime.now(UTC).isoformat(timespec="seconds")}
    schema = pa.schema([("image_id", pa.int64()), ("path", pa.string()), ("observation_id", pa.string()), ("class_id", pa.int64()),
                        ("split", pa.string()), ("country", pa.string()), ("vector", pa.list_(pa.float32(), dim))],
                       metadata={META_KEY: json.dumps(facts, sort_keys=True, default=str).encode()})
    starts = ids[::batch_rows]
    bounds = list(zip(starts, [*starts[1:], ids[-1] + 1]))

    def write(tmp: str) -> None:
        with (store.connect(read_only=True) as con, pq.ParquetWriter(tmp, schema) as writer,
              tqdm(total=len(ids), desc="export-embeddings", unit="row") as bar):
            for low, high in bounds:
                chunk = con.sql(
                    f"SELECT i.image_id, i.path, i.observation_id, i.class_id, i.split, o.country_code AS country, "
                    f"e.vector::FLOAT[{int(dim)}] AS vector FROM embeddings e JOIN images i USING (image_id) "
                    "LEFT JOIN observations o USING (observation_id) "
                    "WHERE i.status = 'ok' AND e.image_id >= ? AND e.image_id < ? ORDER BY i.image_id",
                    params=[int(low), int(high)]).to_arrow_table()
                writer.write_table(chunk.cast(schema), row_group_size=batch_rows)
                bar.update(chunk.num_rows)

    write_atomically(Path(out), write)
    return {"rows": len(ids), "dim": dim, "feature_kind": kind, "fingerprint": model["fingerprint"]}
