"""Family and genus of every class, from a taxonomy table such as The Reptile Database's snake checklist.

The table (e.g. `serpentes.csv`, made from the R package reptiledbr's `reptiledb_012025`) has one row per
species or subspecies: family, genus, species (binomial), subspecies (trinomial or empty), species_author.
Families are derived data: the store keeps them beside each class, an ingest with a taxonomy recomputes them
for every class, and they never change a class's id, name or venom status. A name the table does not know
(often a synonym, e.g. 'Haldea striatula' for 'Virginia striatula') keeps the genus its binomial gives and
takes the family of that genus when the table knows the genus, else family "unknown".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from snakeweb.species import PLACEHOLDER_PREFIX, normalise_name, taxon_key
from snakeweb.store import set_meta
from snakeweb.tables import Column, read_table

log = logging.getLogger(__name__)

UNKNOWN_FAMILY = "unknown"
TAXONOMY_ENV = "SNAKEWEB_TAXONOMY"
TAXONOMY_SUMMARY = "taxonomy_summary"  # DataFrame attr set by assign_taxonomy (as species.ASSIGNED_IDS is)
MAX_LISTED = 100  # unmatched names kept in the summary (and the store's run metadata)
TAXONOMY_COLUMNS = (
    Column("family", required=True),
    Column("genus", required=True),
    Column("species", ("binomial", "binomial_name", "scientific_name"), required=True),
    Column("subspecies", ("trinomial",)),
    Column("species_author", ("author",)),
)
# TaxonRecord.source: where a class's family and genus came from
FROM_TAXONOMY, FROM_GENUS, FROM_BINOMIAL = "taxonomy", "genus", "binomial"


def taxonomy_path(explicit: Path | None) -> Path | None:
    """The taxonomy table to use: `explicit` (--taxonomy), else the environment variable SNAKEWEB_TAXONOMY,
    else None (families stay "unknown"). The path is not checked here; `Taxonomy.from_csv` says if it is unreadable."""
    if explicit is not None and str(explicit):
        return Path(explicit).expanduser()
    from_env = os.environ.get(TAXONOMY_ENV, "").strip()
    return Path(from_env).expanduser() if from_env else None


@dataclass(frozen=True)
class TaxonRecord:
    """Family and genus of one name. `source` is "taxonomy" (the binomial is in the table), "genus" (only
    its genus is: family from the table, genus from the binomial) or "binomial" (neither: genus from the
    binomial, family "unknown"; a placeholder class such as 'class 17' has no genus, so genus is None)."""

    family: str
    genus: str | None
    source: str


@dataclass
class Taxonomy:
    """A taxonomy table read into lookups: `species` maps the `taxon_key` of a binomial to (family, genus),
    `genera` the lower-cased genus to (family, genus as the table spells it)."""

    path: Path
    sha256: str
    species: dict[str, tuple[str, str]]
    genera: dict[str, tuple[str, str]]

    @classmethod
    def from_csv(cls, path: str | Path) -> Taxonomy:
        """Read a taxonomy table (columns family, genus, species; subspecies and species_author optional) with
        `snakeweb.tables.read_table`. Subspecies rows name their species, so they add nothing new. A genus
        (or species) the table lists under more than one family takes the family most of its species have
        (ties: alphabetical), with a warning. Raises a SnakewebError (TableError) when the file is unreadable,
        lacks a column, has no rows, or has rows without a family, genus or species."""
        path = Path(path)
        table = read_table(path, "taxonomy table", TAXONOMY_COLUMNS)
        if not len(table):
            raise table.fail("it has a header but no rows.")
        for column in ("family", "genus", "species"):
            empty = table.frame[column].eq("")
            if empty.any():
                raise table.fail(f"{int(empty.sum())} row(s) have no {column} ({table.where(empty, column)}); "
                                 "fill them in or remove those rows.")
        for column in ("family", "genus", "species"):  # a number is no taxon: it would be a genus or family of its own
            table.taxon_names(column, ids_column=None)
        species_families: dict[str, Counter] = defaultdict(Counter)
        species_genus: dict[str, str] = {}
        for family, genus, binomial in zip(table.frame["family"], table.frame["genus"], table.frame["species"]):
            key = _species_key(binomial)
            species_families[key][family] += 1
            species_genus.setdefault(key, genus)
        species = {key: (_most_frequent(families, f"species {normalise_name(key)}", path), species_genus[key])
                   for key, families in species_families.items()}
        # a genus's family is counted over species, not rows: a species with many subspecies is still one vote
        genus_families: dict[str, Counter] = defaultdict(Counter)
        genus_spelling: dict[str, str] = {}
        for family, genus in species.values():
            genus_families[genus.lower()][family] += 1
            genus_spelling.setdefault(genus.lower(), genus)
        genera = {key: (_most_frequent(families, f"genus {genus_spelling[key]}", path), genus_spelling[key])
                  for key, families in genus_families.items()}
        return cls(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), species=species, genera=genera)

    def classify(self, binomial_name: str | None) -> TaxonRecord:
        """Family and genus of a class name, compared by `taxon_key` ('crotalus_atrox' is 'Crotalus atrox'; a
        trinomial is looked up as its species). See `TaxonRecord` for the three sources; an empty or
        placeholder name gives family "unknown" and genus None."""
        if not isinstance(binomial_name, str) or binomial_name.startswith(PLACEHOLDER_PREFIX) or not taxon_key(binomial_name):
            return TaxonRecord(UNKNOWN_FAMILY, None, FROM_BINOMIAL)
        key = _species_key(binomial_name)
        if key in self.species:
            family, genus = self.species[key]
            return TaxonRecord(family, genus, FROM_TAXONOMY)
        genus_key = key.split(" ")[0]
        if genus_key in self.genera:
            family, genus = self.genera[genus_key]
            return TaxonRecord(family, genus, FROM_GENUS)
        return TaxonRecord(UNKNOWN_FAMILY, normalise_name(genus_key), FROM_BINOMIAL)


def assign_taxonomy(species: pd.DataFrame, taxonomy: Taxonomy | None) -> pd.DataFrame:
    """The species frame (class_id, binomial_name, genus, venom_status) with `family` added: from the taxonomy
    by binomial, else by genus, else "unknown" (every class "unknown" when `taxonomy` is None). `genus` is the
    table's where the binomial was found; elsewhere the frame's own genus is kept (the binomial's first word
    where it has none). No other column changes, so class ids, names and venom status are exactly as given.

    The result's `attrs["taxonomy_summary"]` is a dict: species_matched (classes found by binomial),
    genus_only (found by genus only), family_unknown (named classes with family "unknown"), unnamed
    (placeholder classes), unmatched_total and unmatched (the names not found by binomial, sorted, at most 100).
    """
    frame = species.copy()
    records = [TaxonRecord(UNKNOWN_FAMILY, _binomial_genus(name), FROM_BINOMIAL) if taxonomy is None else taxonomy.classify(name)
               for name in frame["binomial_name"]]
    frame["family"] = [r.family for r in records]
    kept = [g if isinstance(g, str) and g else None for g in frame["genus"]]
    # object dtype: a placeholder's genus stays None (a string column would make it NaN)
    frame["genus"] = pd.Series([r.genus if r.source == FROM_TAXONOMY or g is None else g for r, g in zip(records, kept)],
                               index=frame.index, dtype=object)
    frame.attrs[TAXONOMY_SUMMARY] = _summary(frame["binomial_name"], records)
    return frame


def _summary(names: Iterable[object], records: list[TaxonRecord]) -> dict:
    named = [(n, r) for n, r in zip(names, records) if _is_named(n)]
    unmatched = sorted(str(n) for n, r in named if r.source != FROM_TAXONOMY)
    return {
        "species_matched": sum(r.source == FROM_TAXONOMY for _, r in named),
        "genus_only": sum(r.source == FROM_GENUS for _, r in named),
        "family_unknown": sum(r.family == UNKNOWN_FAMILY for _, r in named),
        "unnamed": len(records) - len(named),
        "unmatched_total": len(unmatched),
        "unmatched": unmatched[:MAX_LISTED],
    }


def _is_named(name: object) -> bool:
    return isinstance(name, str) and bool(taxon_key(name)) and not name.startswith(PLACEHOLDER_PREFIX)


def _binomial_genus(name: object) -> str | None:
    return normalise_name(taxon_key(str(name)).split(" ")[0]) if _is_named(name) else None


def _species_key(name: str) -> str:
    """'Natrix natrix helvetica' -> 'natrix natrix': classes are species, so a subspecies is its species."""
    return " ".join(taxon_key(name).split(" ")[:2])


def _most_frequent(families: Counter, what: str, path: Path) -> str:
    if len(families) == 1:
        return next(iter(families))
    # most species first, then alphabetical, so the same table always gives the same answer
    chosen = sorted(families.items(), key=lambda item: (-item[1], item[0]))[0][0]
    log.warning("The taxonomy table %s lists %s under %d families (%s); snakeweb uses %s.", path, what, len(families),
                ", ".join(f"{f}: {n}" for f, n in families.most_common()), chosen)
    return chosen


# Families whose every species is venomous, front-fanged (Viperidae: vipers and pit vipers; Elapidae: cobras,
# kraits, mambas, coral and sea snakes). Source: The Reptile Database's family accounts; every textbook of
# snakebite medicine (e.g. WHO, Guidelines for the management of snakebites, 2nd ed., 2016, ch. 2). Not
# Atractaspididae: its Aparallactinae include harmless genera.
FRONT_FANGED_FAMILIES = ("Viperidae", "Elapidae")
# the front-fanged genera of Atractaspididae (stiletto snakes, harlequin snakes); the family's other genera
# (Aparallactinae) are rear-fanged and mostly of no medical importance, so the family as a whole is not listed
FRONT_FANGED_GENERA = ("Atractaspis", "Homoroselaps")


def front_fanged_are_venomous(con) -> str:
    """Inside the caller's transaction `con`: every class of a front-fanged family or genus (FRONT_FANGED_FAMILIES,
    FRONT_FANGED_GENERA) that a species table flagged harmless becomes venomous, recorded in run metadata
    `venomous_by_family`. SnakeCLEF's
    MIVS column flags only *medically important* venomous species, so read as a venom flag it called 71 vipers and
    115 elapids harmless (Agkistrodon conanti, the Florida cottonmouth, under a green all-clear). Unknown stays
    unknown (it is never answered harmless). Returns the lines ingest prints: the classes changed, and those flagged
    harmless whose family is unknown ("" when there are neither)."""
    families, genera = ", ".join("?" for _ in FRONT_FANGED_FAMILIES), ", ".join("?" for _ in FRONT_FANGED_GENERA)
    changed = con.execute(f"UPDATE species SET venom_status = 'venomous' WHERE venom_status = 'harmless' AND (family IN ({families}) "
                          f"OR lower(genus) IN ({genera})) RETURNING class_id, binomial_name, family",
                          [*FRONT_FANGED_FAMILIES, *(g.lower() for g in FRONT_FANGED_GENERA)]).fetchall()
    unplaced = _harmless_of_unknown_family(con)
    if not changed:
        return unplaced
    previous = con.execute("SELECT value FROM run_metadata WHERE key = 'venomous_by_family'").fetchall()
    set_meta(con, "venomous_by_family", sorted({int(c) for c, _, _ in changed} | set(json.loads(previous[0][0]) if previous else [])))
    shown = ", ".join(f"{name} ({family})" for _, name, family in sorted(changed, key=lambda r: r[1])[:4])
    return (f"ingest: {len(changed)} species of front-fanged families flagged harmless in the species table are treated as "
            f"venomous, as every viper and elapid is (e.g. {shown}): SnakeCLEF's MIVS flags only medically important "
            "species. `score` still reads the venomous list as given." + (f"\n{unplaced}" if unplaced else ""))


def _harmless_of_unknown_family(con) -> str:
    """The line saying which classes flagged harmless have no family, so that the rule above cannot reach them (a
    sea snake under an older name, `Pelamis platura`, stayed harmless in silence); "" when there are none."""
    found = con.execute("SELECT binomial_name FROM species WHERE venom_status = 'harmless' AND (family IS NULL OR family = ?) "
                        "ORDER BY binomial_name", [UNKNOWN_FAMILY]).fetchall()
    # a placeholder 'class N' has no name a taxonomy could know: counted apart, not as names to fix (26 said, 7 named)
    rows = [r for r in found if not r[0].startswith(PLACEHOLDER_PREFIX)]
    unnamed = len(found) - len(rows)
    apart = (f" ({unnamed} more flagged harmless have no name in the species table, 'class N', so no family can be found "
             "for them)" if unnamed else "")
    if not rows:
        return (f"ingest: {unnamed} class(es) flagged harmless have no name in the species table ('class N'), so no family can be "
                "found for them: give a species table that names them.") if unnamed else ""
    has_taxonomy = con.execute("SELECT count(*) FROM run_metadata WHERE key = 'taxonomy'").fetchone()[0]
    advice = ("name them as the taxonomy table does" if has_taxonomy else
              "give a taxonomy with --taxonomy serpentes.csv (or SNAKEWEB_TAXONOMY)")
    return (f"ingest: {len(rows)} class(es) flagged harmless have family unknown (e.g. {', '.join(r[0] for r in rows[:4])}), so "
            "if one is a viper or elapid under a name the taxonomy lacks (SnakeCLEF's MIVS 0 flags those not medically "
            f"important), it stays harmless: {advice}{apart}.")


def species_as_flagged(store) -> pd.DataFrame | None:
    """A store's species (None for no store) with the venom flags its species tables gave: the classes that
    `front_fanged_are_venomous` made venomous read 'harmless' again, so that the same table given once more agrees
    with the store instead of being refused as a contradiction (the store keeps them venomous)."""
    if not store.exists():
        return None
    species = store.species()
    promoted = set(store.get_meta("venomous_by_family") or [])
    if promoted:
        species = species.copy()
        species.loc[species["class_id"].isin(promoted) & species["venom_status"].eq("venomous"), "venom_status"] = "harmless"
    return species


def assign_families(con, taxa: Taxonomy | None, known_before: set[int] = frozenset()) -> str:
    """Family (and genus) of every class in the store from the taxonomy, recorded in run metadata, inside the caller's
    transaction `con`; returns the line ingest prints about families. Only genus and family are written: ids, names
    and venom status stay. Without `taxa` the store's families are kept, and the line counts what the store holds
    after the ingest, as `check` does (named classes: a placeholder 'class N' has no name to look up), never only the
    table just given; `known_before` (the class ids the store held before this ingest) tells which unknown ones are new."""
    from snakeweb.species import SPECIES_COLUMNS

    if taxa is None:
        rows = con.execute("SELECT class_id, family IS NULL OR family = ? AS unknown FROM species "
                           "WHERE NOT starts_with(binomial_name, ?)", [UNKNOWN_FAMILY, PLACEHOLDER_PREFIX]).fetchall()
        unknown = [int(c) for c, u in rows if u]
        if not unknown:
            return ""
        found = con.execute("SELECT value FROM run_metadata WHERE key = 'taxonomy'").fetchone()
        recorded = json.loads(found[0]) if found else None
        counted = f"ingest: {len(unknown)} of {len(rows)} named class(es) have family unknown"
        if recorded is None:
            return (f"{counted} (no taxonomy table was given); give one with --taxonomy serpentes.csv or "
                    "SNAKEWEB_TAXONOMY=serpentes.csv.")
        new = [c for c in unknown if c not in known_before]
        kept = f"the families from {Path(recorded['path']).name}, given at an earlier ingest, are kept"
        if not new:
            return f"{counted} ({kept}; these are names it does not know)."
        return (f"{counted} ({kept}); {len(new)} of them are new in this ingest: give --taxonomy {recorded['path']} again "
                "to look them up.")
    # families are derived data: recomputed for every class, so a new taxonomy table replaces the old answers
    classified = assign_taxonomy(con.execute(f"SELECT {', '.join(SPECIES_COLUMNS)} FROM species ORDER BY class_id").df(), taxa)
    con.register("classified", classified[["class_id", "genus", "family"]])
    con.execute("UPDATE species SET genus = c.genus, family = c.family FROM classified c WHERE species.class_id = c.class_id")
    summary = classified.attrs[TAXONOMY_SUMMARY]
    set_meta(con, "taxonomy", {"path": str(taxa.path.resolve()), "sha256": taxa.sha256, **summary})
    named = len(classified) - summary["unnamed"]
    missing = summary["unmatched"][:5]
    return (f"ingest: taxonomy {taxa.path.name}: {summary['species_matched']} of {named} species found, "
            f"{summary['genus_only']} more by genus only, {summary['family_unknown']} with family unknown"
            + (f" (not found by name: {', '.join(missing)}{', ...' if summary['unmatched_total'] > len(missing) else ''})"
               if missing else ""))
