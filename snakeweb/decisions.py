"""Decisions on class probabilities: argmax, the venom-aware rule that minimises expected Track2 cost, the
"uncertain" outcome, and the per-country prior over species. The head's output is never changed silently:
each rule is an explicit, recorded option."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.countries import country_name, is_area_without_code, lookup_country, refusal, resolve_country
from snakeweb.errors import SnakewebError
from snakeweb.options import DECISIONS  # defined there so the command line offers them without pandas
from snakeweb.species import taxon_key
from snakeweb.tables import FALSE_WORDS, TRUE_WORDS, read_table

log = logging.getLogger(__name__)
# cells of a species x country table: the flag spellings plus the marks presence matrices use
PRESENT_WORDS = TRUE_WORDS | {"present", "x", "✓", "✔", "+"}
ABSENT_WORDS = FALSE_WORDS | {"absent"}
ACCEPTED_PRESENCE = "1/0, yes/no, true/false, present/absent or x, and empty for no record"
# Track2 costs of calling truth i as j != i
COST_HARMLESS_AS_HARMLESS, COST_HARMLESS_AS_VENOMOUS = 1.0, 2.0
COST_VENOMOUS_AS_HARMLESS, COST_VENOMOUS_AS_VENOMOUS = 5.0, 2.0
# Candidate venom weights w (chosen on validation by the official Track1): Track1 counts errors as percentages of
# the venomous and of the harmless observations, so where venomous snakes are a fifth of the photos each venomous
# error weighs ~4x more there than in Track2's counts; w scales the costs of misidentifying a venomous snake.
VENOM_WEIGHTS = (1.0, 1.5, 2.0, 3.0, 4.0)


def cost_aware_choice(probabilities: np.ndarray, venomous: np.ndarray, venom_weight: float = 1.0) -> np.ndarray:
    """Per row, the class that minimises expected Track2 cost, in O(K) per observation.

    With P_H, P_V the total harmless/venomous probability, calling harmless class j costs
    (P_H - p_j) * 1 + P_V * 5w, and calling venomous class j costs P_H * 2 + (P_V - p_j) * 2w; so only the
    most likely harmless and the most likely venomous class can win. `venom_weight` w = 1 is Track2's own cost.
    """
    return _VenomSplit(probabilities, venomous).choice(venom_weight)


class _VenomSplit:
    """The O(K) part of the cost-aware rule, which does not depend on the venom weight: each row's most likely
    harmless and venomous class, their probabilities and the harmless/venomous totals."""

    def __init__(self, probabilities: np.ndarray, venomous: np.ndarray):
        probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
        venomous = np.asarray(venomous, dtype=bool)
        self.any_harmless, self.any_venomous = not venomous.all(), bool(venomous.any())
        rows = np.arange(len(probabilities))
        self.best_harmless = np.where(venomous, -np.inf, probabilities).argmax(1)
        self.best_venomous = np.where(venomous, probabilities, -np.inf).argmax(1)
        self.p_harmless, self.p_venomous = probabilities[rows, self.best_harmless], probabilities[rows, self.best_venomous]
        self.total_v = probabilities @ venomous.astype(np.float64)
        self.total_h = probabilities.sum(1) - self.total_v

    def choice(self, venom_weight: float) -> np.ndarray:
        cost_h = (COST_HARMLESS_AS_HARMLESS * (self.total_h - self.p_harmless)
                  + venom_weight * COST_VENOMOUS_AS_HARMLESS * self.total_v)
        cost_v = (COST_HARMLESS_AS_VENOMOUS * self.total_h
                  + venom_weight * COST_VENOMOUS_AS_VENOMOUS * (self.total_v - self.p_venomous))
        cost_h = cost_h if self.any_harmless else np.full_like(cost_h, np.inf)
        cost_v = cost_v if self.any_venomous else np.full_like(cost_v, np.inf)
        return np.where(cost_v < cost_h, self.best_venomous, self.best_harmless)


def expected_cost_matrix(venomous: np.ndarray, venom_weight: float = 1.0) -> np.ndarray:
    """The K x K Track2 cost matrix [truth, prediction], venomous rows scaled by `venom_weight`: the
    brute-force reference for tests."""
    v = np.asarray(venomous, dtype=bool)
    cost = np.where(v[:, None], venom_weight * np.where(v[None, :], COST_VENOMOUS_AS_VENOMOUS, COST_VENOMOUS_AS_HARMLESS),
                    np.where(v[None, :], COST_HARMLESS_AS_VENOMOUS, COST_HARMLESS_AS_HARMLESS))
    np.fill_diagonal(cost, 0.0)
    return cost


def decide(probabilities: np.ndarray, venomous: np.ndarray, rule: str = "argmax", venom_weight: float = 1.0) -> np.ndarray:
    if rule == "argmax":
        return np.atleast_2d(probabilities).argmax(1)
    if rule == "cost":
        return cost_aware_choice(probabilities, venomous, venom_weight)
    raise SnakewebError(f"Unknown decision rule {rule!r}; use one of {', '.join(DECISIONS)}.")


def choose_venom_weight(probabilities: np.ndarray, truth: np.ndarray, venomous: np.ndarray,
                        weights: tuple[float, ...] = VENOM_WEIGHTS) -> tuple[float, dict[float, float]]:
    """The venom weight whose cost-aware calls score the best official Track1 on labelled (validation)
    rows; `truth` holds column indices of `probabilities`. Ties go to the smaller weight (fewer alarms)."""
    from snakeweb.scoring import scores_of_arrays

    venomous = np.asarray(venomous, dtype=bool)
    venomous_indices = set(np.flatnonzero(venomous).tolist())
    split = _VenomSplit(probabilities, venomous)  # computed once for all weights
    track1 = {w: scores_of_arrays(truth, split.choice(w), venomous_indices)["Track1 Metric"] for w in weights}
    return max(track1, key=lambda w: (track1[w], -w)), track1


def is_uncertain(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """True where the top probability is below the user's threshold: show candidates, not an answer."""
    return np.atleast_2d(probabilities).max(1) < threshold


@dataclass
class CountryPrior:
    """Species x country presence (e.g. Species_Relevance.csv) keyed by ISO alpha-2 code.

    The table's first column holds species names, every other header a country (name or code, matched
    strictly by `snakeweb.countries`), cells a presence flag (1/0 and the other spellings `Table.flags`
    reads; empty = no record). Species are matched by `taxon_key`.
    """

    presence: pd.DataFrame  # index taxon_key of the species, columns ISO alpha-2 codes, values 1/0, -1 = no record
    unmatched_countries: list[str]
    floor: float = 0.02  # an unlisted species keeps 2% of its probability: unlikely, never impossible
    source: str = ""

    @classmethod
    def from_csv(cls, path: str | Path, floor: float = 0.02, notes: bool = True) -> CountryPrior:
        """Read and check a species x country table; a SnakewebError says what is wrong with it. Its notes (columns
        left out, repeated rows) are warnings, or with `notes=False` (a table recorded at ingest, which said them
        then) info lines, so identify does not repeat them on every photo."""
        say = log.warning if notes else log.info
        table = read_table(path, "species x country table")
        if table.frame.shape[1] < 2 or not len(table):
            raise table.fail("it needs species names in the first column and one column per country.")
        names, countries = table.frame.columns[0], list(table.frame.columns[1:])
        table.taxon_names(names, ids_column=None)  # species names, not class ids: a number would match no species, unsaid
        codes: dict[str, str] = {}
        unmatched: list[str] = []
        refused: list[str] = []
        for position, column in enumerate(countries, 2):
            header = table.headers.get(column, column)  # as written: 'Congo (Kinshasa)' must not become 'congo'
            code = lookup_country(header)
            if code:
                codes[column] = code
                continue
            unmatched.append(header or f"(empty header of column {position})")
            # an area ISO 3166 has no code for (the real table's 'n cyprus') and an empty column are left out with
            # a note; any other header that names no one country is refused: a typo of 'namibia' would otherwise
            # leave Namibia without its prior, unsaid
            if str(header).strip():
                if not is_area_without_code(header):
                    refused.append(refusal(header))
            elif not (table.frame[column].isna().all() or (table.frame[column].astype(str).str.strip() == "").all()):
                refused.append(f"Column {position} has no header but holds values: head it with its country.")
        if not codes:
            raise table.fail(f"none of its column headers is a country snakeweb knows (e.g. {', '.join(unmatched[:3])}); "
                             "give one column per country, headed by its name or ISO code.")
        if refused:
            raise table.fail(f"{len(refused)} column header(s) name no one country. " + " ".join(refused[:3])
                             + " Rename or remove those columns.")
        if unmatched:
            say("%d column(s) of the species x country table %s name no country snakeweb knows and are not used: %s",
                        len(unmatched), path, ", ".join(unmatched[:10]))
        flags = pd.DataFrame({column: table.flags(column, true_words=PRESENT_WORDS, false_words=ABSENT_WORDS,
                                                  accepted=ACCEPTED_PRESENCE) for column in codes})
        presence = flags.apply(lambda col: col.map(lambda v: -1 if v is None else int(v))).astype(np.int8)
        presence.columns = [codes[c] for c in presence.columns]
        repeated = sorted({c for c in presence.columns if list(presence.columns).count(c) > 1})
        if repeated:
            say("The species x country table %s has more than one column for %s; a species counts as present "
                        "where any of them says so.", path, ", ".join(repeated))
            presence = presence.T.groupby(level=0).max().T
        # a trinomial's records are its species' records (the store's classes are species)
        keys = [" ".join(taxon_key(n).split(" ")[:2]) for n in table.frame[names]]
        presence.index = keys
        presence = presence[presence.index != ""]
        if presence.index.duplicated().any():
            shown = sorted(set(presence.index[presence.index.duplicated()]))
            say("The species x country table %s has more than one row for %d species (e.g. %s, or subspecies of one "
                        "species); a species counts as present where any of its rows says so.", path, len(shown), ", ".join(shown[:3]))
            presence = presence.groupby(level=0).max()
        return cls(presence=presence, unmatched_countries=unmatched, floor=floor, source=str(path))

    @staticmethod
    def country_code(country: str) -> str:
        """The alpha-2 code of a country a user typed; a CountryError (a SnakewebError) when it is not exactly one."""
        return resolve_country(country)

    def knows(self, country: str | None) -> bool:
        """Whether the table has records for this alpha-2 code: a column with at least one species present (a
        column of zeros records nothing, and applying it would push probability to the species it lacks)."""
        return bool(country) and country in self.presence.columns and bool((self.presence[country] == 1).any())

    def require_species(self, species_names: list[str]) -> None:
        """Refuse a table whose species match none of a store's: it would silently change nothing."""
        if not self.coverage(species_names)["species_matched"]:
            shown = ", ".join(repr(n) for n in list(self.presence.index[:3]))
            raise SnakewebError(
                f"None of the {len(species_names)} species in this store is in the species x country table {self.source} "
                f"(its species look like {shown}); give the table that lists these species."
            )

    def weights(self, species_names: list[str], country: str | None) -> np.ndarray:
        """Per-species multipliers for one country: 1 where present, `floor` where absent, 1 where the table
        knows nothing (species not in the table, an empty cell, or no/unknown country). All 1 when none of
        `species_names` is recorded present there: down-weighting every listed species would only push the
        probability onto the species the table does not list (see `note`)."""
        weights = np.ones(len(species_names))
        if not self.knows(country):
            return weights
        values = self.records(species_names, country)
        if not (values == 1).any():
            return weights
        weights[values == 0] = self.floor
        return weights

    def records(self, species_names: list[str], country: str) -> np.ndarray:
        """Per species (matched by `taxon_key`), int8 of shape [len(species_names)]: 1 recorded present in
        `country` (an alpha-2 code), 0 recorded absent, -1 no record (also for every species when the table has
        no column for `country`)."""
        if country not in self.presence.columns:
            return np.full(len(species_names), -1, dtype=np.int8)
        column = self.presence[country]
        return np.array([column.get(taxon_key(name), -1) for name in species_names], dtype=np.int8)

    _records = records  # the earlier private name

    def with_overrides(self, overrides: pd.DataFrame) -> CountryPrior:
        """A new prior: this table with range records applied (this one is left unchanged).

        `overrides` has one row per record with columns binomial_name, country_code (alpha-2) and present
        (bool), as `snakeweb.ranges.current_range_overrides` returns them; where rows repeat a species x country
        pair the later row wins. Species and countries the table lacks are added, with -1 (no record) in their
        other cells. Raises SnakewebError when a column is missing.
        """
        missing = [c for c in ("binomial_name", "country_code", "present") if c not in overrides.columns]
        if missing:
            raise SnakewebError(f"Range records need the column(s) {', '.join(missing)}; pass the frame "
                                "snakeweb.ranges.current_range_overrides returns.")
        # a record whose species has no name cannot be matched to any class: skip it rather than key it as ''
        rows = [(taxon_key(name), str(code), 1 if bool(present) else 0)
                for name, code, present in zip(overrides["binomial_name"], overrides["country_code"], overrides["present"])
                if isinstance(name, str) and taxon_key(name)]
        species = list(dict.fromkeys(key for key, _, _ in rows if key not in self.presence.index))
        countries = list(dict.fromkeys(code for _, code, _ in rows if code not in self.presence.columns))
        presence = self.presence.reindex(index=[*self.presence.index, *species], columns=[*self.presence.columns, *countries],
                                         fill_value=-1).astype(np.int8)
        for key, code, value in rows:
            presence.at[key, code] = value
        pairs = len({(key, code) for key, code, _ in rows})
        source = f"{self.source} + {pairs} range record(s)" if self.source else f"{pairs} range record(s)"
        return replace(self, presence=presence, source=source)

    @classmethod
    def from_overrides(cls, overrides: pd.DataFrame, floor: float = 0.02) -> CountryPrior | None:
        """A prior made of range records alone (a store built without a species x country table); None when
        `overrides` has no rows. Columns as for `with_overrides`."""
        if overrides is None or overrides.empty:
            return None
        empty = cls(presence=pd.DataFrame(dtype=np.int8), unmatched_countries=[], floor=floor, source="")
        return empty.with_overrides(overrides)

    def apply(self, probabilities: np.ndarray, species_names: list[str], countries: list[str | None]) -> np.ndarray:
        """Multiply each row by its country's weights and renormalise."""
        out = np.array(probabilities, dtype=np.float64, copy=True)
        cache: dict[str | None, np.ndarray] = {}
        for row, country in enumerate(countries):
            if country not in cache:
                cache[country] = self.weights(species_names, country)
            out[row] *= cache[country]
        return out / out.sum(1, keepdims=True)

    def coverage(self, species_names: list[str]) -> dict[str, int]:
        matched = sum(taxon_key(name) in self.presence.index for name in species_names)
        return {"species_matched": matched, "species_total": len(species_names),
                "countries_matched": int(self.presence.shape[1]), "countries_unmatched": len(self.unmatched_countries)}

    def note(self, country: str, species_names: list[str] | None = None) -> str | None:
        """A sentence when the prior cannot change anything for `country`: the table has no column for it, or
        (given the store's species) none of them is recorded there, so every weight would be the same."""
        if not self.knows(country):
            return f"The species x country table has no records for {country_name(country)} ({country}); no country prior was applied."
        if species_names is not None and not (self.records(species_names, country) == 1).any():
            return (f"None of this store's species is recorded in {country_name(country)} ({country}) by the species x "
                    "country table, so the country prior changes nothing; it was not applied.")
        return None
