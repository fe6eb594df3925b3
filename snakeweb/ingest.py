"""Ingest: list photos (an image folder, read by snakeweb.folders, or SnakeCLEF metadata + image root) into the store.

Ingest only lists files; reading, hashing and decoding happen once, in the embed stage (ingest hashes only a stored
photo whose size or modification time changed: snakeweb.changed_photos). One ingest is one
transaction, and re-running it adds only paths the store does not have yet, so it is idempotent.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.changed_photos import refresh_changed
from snakeweb.consistency import (
    one_animal_across_files,
    one_animal_per_observation,
    one_class_per_observation,
    one_observation_per_photo,
    one_value_per_observation,
    refuse_relabels,
    same_animal_as_stored,
)
from snakeweb.countries import country_column
from snakeweb.errors import SnakewebError
from snakeweb.folders import NoPhotosError, link_problem, scan_folder
from snakeweb.paths import as_stored, file_keys, second_names, under_root
from snakeweb.removal import first_free_image_id, remove_images
from snakeweb.species import (
    ASSIGNED_IDS,
    SPECIES_COLUMNS,
    UNKNOWN,
    combine_with_store,
    normalise_name,
    one_class_per_name,
    taxon_key,
    with_names_from,
)
from snakeweb.splits import read_subsets, split_of, update_splits
from snakeweb.store import Store, set_meta
from snakeweb.tables import Column, Table, read_table
from snakeweb.taxon_match import match_taxa
from snakeweb.taxonomy import (
    UNKNOWN_FAMILY,
    Taxonomy,
    assign_families,
    front_fanged_are_venomous,
    species_as_flagged,
    taxonomy_path,
)

log = logging.getLogger(__name__)

METADATA_COLUMNS = (
    Column("observation_id", ("observation", "obs_id"), required=True),
    Column("image_path", ("path", "file", "filename", "file_path", "image"), required=True),
    Column("class_id", ("classid",)),
    Column("binomial_name", ("species", "binomial", "scientific_name")),
    Column("code", ("country_code", "countrycode")),
    Column("country"),  # SnakeCLEF 2022 has both: a name here and the ISO code in `code` (they must agree)
    Column("subset", ("split",)),
)


def read_metadata(csv_paths: Sequence[Path], image_root: Path) -> pd.DataFrame:
    """SnakeCLEF-style metadata rows (read by `snakeweb.tables.read_table`) with absolute paths: columns path,
    observation_id, class_id (nullable Int64), binomial_name, country_code (alpha-2 or None), subset, error.

    Class ids must be whole numbers (empty = unlabelled), countries exactly one country each (empty or
    'unknown' = not known); anything else raises a SnakewebError naming the file, lines and values.
    """
    frames = []
    for csv_path in csv_paths:
        table = read_table(csv_path, "metadata", METADATA_COLUMNS)
        if not len(table):
            raise table.fail("it has a header but no rows.")
        for column in ("observation_id", "image_path"):
            empty = table.frame[column].eq("")
            if empty.any():
                raise table.fail(f"{int(empty.sum())} row(s) have no {column} ({table.where(empty, column)}); fill them in.")
        rows = pd.DataFrame({
            "observation_id": table.identifiers("observation_id"),
            "image_path": table.text("image_path"),
            "class_id": table.ids("class_id", missing_ok=True) if table.has("class_id") else pd.NA,
            "binomial_name": table.taxon_names("binomial_name") if table.has("binomial_name") else None,
            "country_code": country_codes(table),
            "subset": read_subsets(table) if table.has("subset") else None,
        })
        one_animal_per_observation(rows, table)
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True)
    frame["class_id"] = frame["class_id"].astype("Int64")
    one_animal_across_files(frame)
    frame = one_value_per_observation(frame)
    frame["path"] = [under_root(image_root, p) for p in frame["image_path"]]
    outside = "its image_path leads outside the image root, which snakeweb does not read"
    frame["error"] = [link_problem(Path(p), image_root, outside) for p in frame["path"]]
    missing = sum(not os.path.lexists(p) for p in frame["path"])
    if missing == len(frame):
        raise SnakewebError(f"None of the {len(frame)} image paths in the metadata exists under the image root {image_root} "
                            f"(e.g. {frame['image_path'].iloc[0]}); check --image-root.")
    if missing:
        log.warning("%d of the %d image paths in the metadata do not exist under %s; the embed stage records each of them "
                    "as missing.", missing, len(frame), image_root)
    frame["path"] = file_keys(frame["path"])  # a loop of folders or `..` in image_path: the same photo by one name
    one_observation_per_photo(frame)
    duplicated = frame["path"].duplicated()
    if duplicated.any():
        log.warning("%d metadata rows repeat an earlier row of the same photo; it is listed once", int(duplicated.sum()))
        frame = frame[~duplicated]
    return frame.reset_index(drop=True)


def ingest(
    store: Store,
    images: Path | None = None,
    metadata: Sequence[Path] = (),
    image_root: Path | None = None,
    species_table: pd.DataFrame | None = None,
    country_table: Path | None = None,
    taxonomy: Path | None = None,
    remove_gone: bool = False,
) -> dict[str, int]:
    """Add photos to the store; returns counts of what was added and what was already there. A species x
    country table, when given, is checked and recorded for country priors at identify time.

    `taxonomy` (else the environment variable SNAKEWEB_TAXONOMY, see `snakeweb.taxonomy.taxonomy_path`) is a
    taxonomy table such as serpentes.csv: every class in the store, old and new, then gets its family and
    genus from it, and run metadata "taxonomy" records the file and what matched. Without one, new classes
    get family "unknown" and one printed line says how to give one. Families never change class ids, names
    or venom status. An unreadable taxonomy table raises a SnakewebError before the store is touched.

    `remove_gone` (folders only) removes, in the same transaction, the stored photos from this folder that are no
    longer on disk (snakeweb.removal.remove_images; reviews are kept); without it they are only named."""
    if (images is None) == (not metadata):
        raise SnakewebError("Give either --images DIR or --metadata CSV... with --image-root DIR.")
    if remove_gone and images is None:
        # a store is often built from several metadata files ingested apart (train, then validation): a row absent
        # from this file is not a row deleted from it, and photos listed but missing are recorded by embed, not gone
        raise SnakewebError("--remove-gone removes photos gone from an --images folder; with --metadata it cannot tell a "
                            "row deleted from the file from one another metadata file listed, so it is refused: build a "
                            "new store from the metadata as it is now.")
    given_table = species_table is not None and not species_table.empty
    # a second ingest matches names against the store's own classes too, and may not contradict them
    species_table = combine_with_store(species_as_flagged(store), species_table)
    skipped: list[str] = []
    hidden: list[str] = []
    if images is not None:
        try:
            listing, skipped, hidden = scan_folder(Path(images))
        except NoPhotosError as exc:
            raise NoPhotosError(_left_unchanged(store, exc, remove_gone)) from exc
        matched = match_taxa(listing["species"].dropna(), species_table, require_match=given_table)
        # the store keeps the whole species table it was given (as metadata ingest does), so a later ingest
        # without it still knows every class id and venom flag
        species, assigned = matched.species, matched.assigned
        if species_table is not None:
            species = pd.concat([species_table[SPECIES_COLUMNS], species[~species["class_id"].isin(species_table["class_id"])]])
        listing["class_id"] = listing["species"].map(matched.classes)
        listing["subspecies"] = listing["species"].map(matched.subspecies)
        listing["country_code"] = None
        listing["subset"] = None
        source = {"kind": "folder", "root": str(Path(images).resolve())}
    else:
        if image_root is None:
            raise SnakewebError("--metadata needs --image-root, the folder that image_path is relative to.")
        listing = read_metadata([Path(p) for p in metadata], Path(image_root))
        listing, species, assigned = _species_from_metadata(listing, species_table)
        one_class_per_observation(listing)
        source = {"kind": "snakeclef", "metadata": [str(p) for p in metadata], "root": str(Path(image_root).resolve())}
    prior = checked_country_table(country_table, species)
    taxonomy_file = taxonomy_path(taxonomy)
    taxa = Taxonomy.from_csv(taxonomy_file) if taxonomy_file is not None else None

    store.create()
    with store.transaction() as con:
        families = record_species(con, species, taxa)
        stored = con.execute("SELECT i.path, i.class_id, i.observation_id, o.country_code, i.split FROM images i "
                             "JOIN observations o USING (observation_id)").df()
        listing["path"] = as_stored(listing["path"], stored["path"])  # one photo keeps one path however it is spelled
        if images is not None:
            # a photo of a second batch stored under its full path (_own_observations) keeps that observation
            renamed = stored.loc[stored["observation_id"] == stored["path"], "path"]
            again = listing["path"].isin(set(renamed))
            listing.loc[again, "observation_id"] = listing.loc[again, "path"]
        # two names of one photo (a link): one is kept (a stored one first), the other recorded with its reason.
        # Stored photos take part: a link made later to a stored photo was a second copy of it, perhaps under another
        # species. "Folders" are class ids, so links under two species leave no name that says which it is.
        named = dict(zip(stored["path"], stored["path"]))
        named.update(zip(listing["path"], listing["observation_id"] if images is not None else listing["image_path"]))
        others = stored[~stored["path"].isin(set(listing["path"]))]
        gone = _gone_from(images, others["path"]) if images is not None else []
        paths = [*listing["path"], *others["path"]]
        classes = [None if pd.isna(c) else int(c) for c in [*listing["class_id"], *others["class_id"]]]
        reasons = second_names(paths, classes, named.__getitem__, set(stored["path"]))[:len(listing)]
        listing["error"] = [error if isinstance(error, str) else reason for error, reason in zip(listing["error"], reasons)]
        # a photo of a stored observation without a class of its own is that observation's animal (before the relabel
        # check, so the same ingest run again finds nothing changed)
        known = dict(stored.drop_duplicates("observation_id")[["observation_id", "class_id"]].dropna().itertuples(index=False))
        listing["class_id"] = listing["class_id"].astype("Int64").fillna(
            listing["observation_id"].astype(str).map(known).astype("Int64"))
        refuse_relabels(listing, stored)
        fresh = listing[~listing["path"].isin(set(stored["path"]))].copy()
        if images is not None:
            fresh["observation_id"] = _own_observations(fresh, set(stored["observation_id"]))
        same_animal_as_stored(con, fresh)
        next_id = first_free_image_id(con)
        fresh["image_id"] = range(next_id, next_id + len(fresh))
        fresh["class_id"] = fresh["class_id"].astype("Int64")
        fresh["observation_id"] = fresh["observation_id"].astype(str)
        fresh["subset"] = fresh["subset"].astype(object) if "subset" in fresh else None
        fresh["subspecies"] = fresh["subspecies"].astype(object).where(fresh["subspecies"].notna(), None)  # all empty: not DOUBLE
        fresh["status"] = np.where(fresh["error"].notna(), "error", "pending")
        con.register("fresh", fresh[["image_id", "observation_id", "path", "class_id", "country_code", "subset", "subspecies",
                                     "status", "error"]])
        con.execute(
            "INSERT INTO images (image_id, observation_id, path, class_id, split, status, error) "
            "SELECT image_id, observation_id, path, class_id, 'unassigned', status, error FROM fresh"
        )
        con.execute(
            "INSERT INTO observations (observation_id, class_id, country_code, split, subspecies) "
            "SELECT observation_id, first(class_id), first(country_code), 'unassigned', any_value(subspecies) "
            "FROM fresh GROUP BY observation_id "  # a stored observation keeps its values; a trinomial fills an empty subspecies
            "ON CONFLICT (observation_id) DO UPDATE SET subspecies = COALESCE(observations.subspecies, EXCLUDED.subspecies)"
        )
        # each observation's subset where one is given (one per observation: consistency.one_animal_across_files); an empty one says nothing
        subsets = {o: v for o, v in zip(fresh["observation_id"], fresh["subset"]) if split_of(v)} if "subset" in fresh else {}
        update_splits(con, subsets)
        set_meta(con, "source", source)
        record_numbered_ids(con, species, species_table, assigned)
        if prior is not None:
            set_meta(con, "country_table", str(Path(country_table).resolve()))
        # last, after the new rows took their ids above the removed ones: a removed id never names a new photo
        removal = remove_images(con, gone if remove_gone else [], source["root"])
        # photos already stored whose bytes changed in place (same path): embedded again by the next embed stage
        changed = refresh_changed(con, listing.loc[listing["path"].isin(set(stored["path"])), "path"].tolist(), source["root"])
    rejected = int(fresh["error"].notna().sum())
    if removal.images:
        print(removal.summary())
    elif gone:  # a moved, renamed or deleted photo kept its row, vector and label with no word (a relabel by a move, a leak by a rename)
        log.warning("ingest: %d photo(s) that an earlier ingest took from this folder are no longer there (e.g. %s): moved, "
                    "renamed or deleted. The store keeps them, with their vectors and labels, so the head still trains on them, "
                    "search still shows them, and a photo moved to another species folder has both labels; to remove them "
                    "(reviews are kept), ingest or build again with --remove-gone.", len(gone), ", ".join(gone[:3]))
    if changed.images or changed.retried:
        print(changed.summary())
    if families:
        print(families)
    if skipped:
        log.warning("ingest: %d file(s) that are not photos were skipped: %s", len(skipped), ", ".join(skipped[:5]))
    if hidden:
        log.warning("ingest: %d hidden file(s) (a name or folder starting with '.') were left out: %s%s; rename them "
                    "to include them", len(hidden), ", ".join(hidden[:5]), ", ..." if len(hidden) > 5 else "")
    return {"added": len(fresh), "already_present": len(listing) - len(fresh), "rejected": rejected, "skipped": skipped,
            "hidden": hidden, "removed": removal.images, "gone": len(gone) - removal.images, "changed": changed.images}


def _left_unchanged(store: Store, exc: NoPhotosError, remove_gone: bool) -> str:
    """The sentence for a folder with no photos ingested into a store that holds some: the store is left as it was
    (a folder emptied by mistake, or a wrong path, must not empty a store), and what to do instead."""
    held = int(store.query("SELECT count(*) AS n FROM images")["n"][0]) if store.db_path.is_file() else 0
    if not held:
        return str(exc)
    removed = " and removed none of its photos (--remove-gone)" if remove_gone else ""
    return (f"{str(exc).rstrip('.')}; the store {store.root} was left unchanged{removed}: it still holds {held} photo(s). "
            "Check the --images path; to empty the store, build a new one (--store a new folder).")


def _gone_from(folder: Path, stored_paths: pd.Series) -> list[str]:
    """Stored photo paths under `folder` that are no longer on disk (moved, renamed or deleted since they were ingested)."""
    root = os.path.join(os.path.realpath(folder), "")
    return [p for p in stored_paths if isinstance(p, str) and p.startswith(root) and not os.path.lexists(p)]


def _own_observations(fresh: pd.DataFrame, stored: set[str]) -> list[str]:
    """Observation ids for new folder photos: the path relative to the folder, or the full path where a stored photo
    from another folder has that relative path already (a second batch of `Natrix natrix/IMG_0001.jpg`: another
    animal, which joined the stored observation and took its split)."""
    taken = fresh["observation_id"].astype(str).isin(stored)
    if taken.any():
        log.warning("ingest: %d new photo(s) have the same species folder and file name as photos already in the store "
                    "from another folder (e.g. %s); each is its own observation, named by its full path.",
                    int(taken.sum()), fresh.loc[taken, "observation_id"].iloc[0])
    return [path if clash else observation for observation, path, clash in zip(fresh["observation_id"], fresh["path"], taken)]


def record_species(con, species: pd.DataFrame, taxa: Taxonomy | None) -> str:
    """Add a species table (SPECIES_COLUMNS) to the store inside the caller's transaction `con`: new classes are
    inserted, known ones only get what the store did not know (an unknown venom status, a placeholder name, a
    missing genus or family; conflicts were refused by `combine_with_store`), then every class gets its family
    from `taxa`, and a front-fanged one flagged harmless becomes venomous (taxonomy.front_fanged_are_venomous).
    Returns the lines to print about families ("" when there is nothing to say)."""
    # typed, because an empty table (metadata without any label) has float columns, which DuckDB will not compare
    typed = species[SPECIES_COLUMNS].astype({"class_id": "int64", "binomial_name": object, "genus": object, "venom_status": object})
    known_before = {int(c) for (c,) in con.execute("SELECT class_id FROM species").fetchall()}
    con.register("new_species", typed)
    con.execute(
        "INSERT INTO species (class_id, binomial_name, genus, venom_status, family) "
        f"SELECT *, '{UNKNOWN_FAMILY}' FROM new_species ON CONFLICT (class_id) DO UPDATE SET "
        "venom_status = CASE WHEN species.venom_status = 'unknown' THEN excluded.venom_status ELSE species.venom_status END, "
        "binomial_name = CASE WHEN species.binomial_name LIKE 'class %' THEN excluded.binomial_name ELSE species.binomial_name END, "
        "genus = COALESCE(species.genus, excluded.genus), family = COALESCE(species.family, excluded.family)"
    )
    con.unregister("new_species")
    return "\n".join(line for line in (assign_families(con, taxa, known_before), front_fanged_are_venomous(con)) if line)


def record_numbered_ids(con, species: pd.DataFrame, species_table: pd.DataFrame | None, assigned=()) -> None:
    """Run metadata ASSIGNED_IDS: the class ids snakeweb numbered itself (no table gave them), kept across ingests,
    so a SnakeCLEF submission does not carry them silently."""
    from_table = set((species_table.attrs if species_table is not None else {}).get(ASSIGNED_IDS, []))
    previous = con.execute("SELECT value FROM run_metadata WHERE key = ?", [ASSIGNED_IDS]).fetchall()
    numbered = (set(assigned) | from_table) & set(species["class_id"].astype(int))
    set_meta(con, ASSIGNED_IDS, sorted(numbered | set(json.loads(previous[0][0]) if previous else [])))


def country_codes(table: Table) -> list[str | None] | None:
    """Alpha-2 codes from `code`, else from `country`; with both, a row where they name different countries is refused."""
    codes = country_column(table, "code") if table.has("code") else None
    names = country_column(table, "country") if table.has("country") else None
    if codes is None or names is None:
        return codes if codes is not None else names
    clash = np.array([a is not None and b is not None and a != b for a, b in zip(codes, names)])
    if clash.any():
        raise table.fail(f"{int(clash.sum())} row(s) give a code and a country that differ ({table.where(clash, 'code')} vs "
                         f"{table.where(clash, 'country')}); correct one of them.")
    return [a if a is not None else b for a, b in zip(codes, names)]


def checked_country_table(country_table: Path | None, species: pd.DataFrame):
    """The species x country table, read now so a table that cannot be used stops ingest, not identify."""
    if country_table is None:
        return None
    from snakeweb.decisions import CountryPrior

    prior = CountryPrior.from_csv(country_table)
    prior.require_species(species["binomial_name"].tolist())
    return prior


def _species_from_metadata(listing: pd.DataFrame, table: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """(listing with class_id and subspecies, species rows). Rows with a class id name it (one name per id, or
    a SnakewebError); rows with a name but no class id are matched to the species table like folder names."""
    listing = listing.copy()
    names = listing["binomial_name"].where(listing["binomial_name"].notna(), None)
    listing["subspecies"] = [normalise_name(n) if isinstance(n, str) and len(taxon_key(n).split(" ")) >= 3 else None
                             for n in names]
    labelled = listing[listing["class_id"].notna()]
    named = labelled.assign(species_key=labelled["binomial_name"].map(
        lambda n: " ".join(taxon_key(n).split(" ")[:2]) if isinstance(n, str) else ""))
    clashing = named[named["species_key"] != ""].groupby("class_id")["species_key"].nunique()
    if (clashing > 1).any():
        first = int(clashing[clashing > 1].index[0])
        shown = sorted(set(named.loc[named["class_id"] == first, "binomial_name"].dropna()))[:3]
        raise SnakewebError(f"The metadata gives class {first} more than one species name ({', '.join(shown)}); "
                            "correct the class_id or binomial_name of those rows.")
    first_named = named.sort_values("species_key", ascending=False).drop_duplicates("class_id")
    rows = pd.DataFrame({
        "class_id": first_named["class_id"].astype("int64"),
        "binomial_name": [normalise_name(k) if k else f"class {c}" for k, c in zip(first_named["species_key"], first_named["class_id"])],
    })
    rows["genus"] = [name.split(" ")[0] for name in rows["binomial_name"]]
    rows["venom_status"] = UNKNOWN
    if table is None:  # one name under two class ids (405 Crotalus atrox, 406 crotalus_atrox) stuck every later ingest
        one_class_per_name(rows[~rows["binomial_name"].astype(str).str.startswith("class ")].assign(source="the metadata"))
    species = rows[SPECIES_COLUMNS] if table is None else with_names_from(table, rows)
    by_name = listing["class_id"].isna() & listing["binomial_name"].notna()
    assigned: list[int] = []
    if by_name.any():
        # names the metadata's own classes do not have are new species, not a wrong table (none was given)
        matched = match_taxa(listing.loc[by_name, "binomial_name"], species, require_match=table is not None)
        listing.loc[by_name, "class_id"] = listing.loc[by_name, "binomial_name"].map(matched.classes).astype("Int64")
        species = pd.concat([species, matched.species[~matched.species["class_id"].isin(species["class_id"])]])
        species = species.sort_values("class_id").reset_index(drop=True)
        assigned = matched.assigned
    return listing, species, assigned


