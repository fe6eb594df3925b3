"""Names a user hands in (photo folder names, metadata names) matched to the species table's classes.

Binomials, trinomials (a subspecies goes to its species' class unless the table has it), class ids as folder
names, and new names that get class ids of their own with venom status unknown. The table itself and the
class-id <-> head-index mapping live in `snakeweb.species`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.species import (
    PLACEHOLDER_PREFIX,
    SPECIES_COLUMNS,
    UNKNOWN,
    is_trinomial,
    normalise_name,
    one_class_per_name,
    taxon_key,
)
from snakeweb.tables import folder_class_id, is_taxon_name

log = logging.getLogger(__name__)


@dataclass
class TaxonMatch:
    """Folder (or table) names matched to classes."""

    species: pd.DataFrame  # the classes the names use, SPECIES_COLUMNS
    classes: dict[str, int]  # name as given -> class id
    subspecies: dict[str, str]  # name as given -> trinomial, for names that are a subspecies
    unmatched: list[str]  # display names that got new class ids (venom status unknown)
    assigned: list[int]  # the class ids given to them


def _ambiguous_subspecies(cases: list[tuple]) -> str:
    """The sentence for trinomials whose epithet the species table also has as a species of the genus
    ('Macrovipera lebetinus schweizeri' vs Macrovipera schweizeri): which one is meant decides class and venom."""
    def said(row) -> str:
        # no venom status: the table's flag may not be the store's (a viper flagged harmless becomes venomous at ingest)
        return f"{row.binomial_name} (class {int(row.class_id)})"

    name, species_row, raised = cases[0]
    as_species = f"as a subspecies of {said(species_row)}" if species_row is not None else "as a subspecies"
    more = f" ({len(cases) - 1} more name(s) like it: {', '.join(repr(c[0]) for c in cases[1:4])})" if len(cases) > 1 else ""
    return (f"The name {name!r} could be read {as_species} or as {said(raised)}, a species the species table also has: "
            f"many subspecies have been raised to species, so snakeweb cannot tell which is meant{more}; rename it to the "
            "binomial you mean.")


def match_taxa(names: Iterable[str], table: pd.DataFrame | None, require_match: bool = True) -> TaxonMatch:
    """Match names to the species table, comparing `taxon_key`s: a binomial matches its class; a trinomial
    its own class if the table has one, else its species' class (the subspecies is kept); a whole number the
    class with that id. A name that matches nothing gets a new class id above the table's (in sorted-name
    order, so the same names always get the same ids) and venom status "unknown".

    Raises SnakewebError when a table is given, `require_match`, and none of the names matches it (a table
    that matches nothing is a mistake, not a set of new species); and for a trinomial whose last epithet the table
    also has as a species of its genus ('Macrovipera lebetinus schweizeri': M. lebetinus harmless, M. schweizeri
    venomous in SnakeCLEF's table), where the folder went silently to the harmless one.
    """
    given = sorted({n for n in names if isinstance(n, str) and taxon_key(n)})
    table = table if table is not None and not table.empty else None
    if table is not None:
        one_class_per_name(table[~table["binomial_name"].str.startswith(PLACEHOLDER_PREFIX)].assign(source="the species table"))
    by_key: dict[str, tuple] = {} if table is None else {
        taxon_key(r.binomial_name): r for r in table.itertuples(index=False)
        if not str(r.binomial_name).startswith(PLACEHOLDER_PREFIX)
    }
    by_id = {} if table is None else {int(r.class_id): r for r in table.itertuples(index=False)}
    rows: dict[int, dict] = {}
    classes, subspecies, new_names, ambiguous = {}, {}, {}, []
    numbered: list[str] = []
    for name in given:
        key = taxon_key(name)
        words = key.split(" ")
        row = by_key.get(key)
        number = folder_class_id(name, key)
        if row is None and number is not None:
            row = by_id.get(number)
            if row is None and table is not None and require_match:
                raise SnakewebError(f"Folder {name} names class id {number}, which the species table does not have; "
                                    "rename the folder to a class id or species name of the table, or give a table with that class.")
            if row is None:  # no table names it: the class id is the user's, its name and venom status unknown
                rows[number] = {"class_id": number, "binomial_name": f"{PLACEHOLDER_PREFIX}{number}", "genus": None,
                                "venom_status": UNKNOWN}
                classes[name] = number
                numbered.append(name)
                continue
        if row is None and is_trinomial(key):  # a subspecies: its species' class
            row = by_key.get(" ".join(words[:2]))
            subspecies[name] = normalise_name(key)
            raised = by_key.get(f"{words[0]} {words[2]}")  # the subspecies raised to a species, as taxonomists often have
            if raised is not None and (row is None or int(raised.class_id) != int(row.class_id)):
                ambiguous.append((name, row, raised))
        if row is None:
            if not is_taxon_name(name):  # 'NaN' became species 'Nan', '١٢' (no class id) a species of its own
                raise SnakewebError(f"Folder {name} is named neither by a class id nor by a taxon name (a genus in Latin letters "
                                    "first, as in 'Vipera berus'); rename it to a class id or species name.")
            new_names[name] = normalise_name(" ".join(words[:2]) if name in subspecies else key)
            continue
        rows[int(row.class_id)] = {c: getattr(row, c) for c in SPECIES_COLUMNS}
        classes[name] = int(row.class_id)
    if ambiguous:
        raise SnakewebError(_ambiguous_subspecies(ambiguous))
    if table is not None and require_match and given and not classes:
        shown = ", ".join(repr(n) for n in given[:3])
        examples = ", ".join(repr(n) for n in list(by_key)[:3])
        looks = f"whose names look like {examples}" if by_key else "which has no names: give one with a binomial_name column too"
        raise SnakewebError(
            f"None of the {len(given)} species name(s) ({shown}, ...) matches a name in the species table "
            f"({looks}); check that you gave the right table and folder."
        )
    next_id = 0 if table is None else int(table["class_id"].max()) + 1
    new_ids: dict[str, int] = {}
    for display in sorted(set(new_names.values())):
        while next_id in rows:  # a folder named by a class id holds that id
            next_id += 1
        new_ids[display] = next_id
        rows[next_id] = {"class_id": next_id, "binomial_name": display, "genus": display.split(" ")[0], "venom_status": UNKNOWN}
        next_id += 1
    classes.update({name: new_ids[display] for name, display in new_names.items()})
    unmatched = sorted(new_ids)
    if unmatched and table is not None:
        log.warning(
            "%d species name(s) are not in the species table and got new class ids above it, with venom status unknown "
            "(treated as possibly venomous): %s", len(unmatched), ", ".join(unmatched[:10]),
        )
    if numbered:
        log.warning("%d folder(s) named by a number are taken as those class ids, which no species table names, so each is "
                    "'class N' with venom status unknown (treated as possibly venomous): %s; give --species with those "
                    "classes to name them", len(numbered), ", ".join(numbered[:10]))
    species = pd.DataFrame(list(rows.values()), columns=SPECIES_COLUMNS).sort_values("class_id").reset_index(drop=True)
    return TaxonMatch(species=species, classes=classes, subspecies=subspecies, unmatched=unmatched,
                      assigned=sorted(new_ids.values()))
