"""Decisions on class probabilities: argmax, the venom-aware rule that minimises expected Track2 cost, the
"uncertain" outcome, and the per-country prior over species. The head's output is never changed silently:
each rule is an explicit, recorded option."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.species import normalise_name
from snakeweb.tables import read_user_csv

log = logging.getLogger(__name__)
# Country names are matched by pycountry; these are only the former or colloquial names it does not know.
FORMER_COUNTRY_NAMES = {
    "burma": "Myanmar", "turkey": "Türkiye", "ivory coast": "Côte d'Ivoire", "swaziland": "Eswatini",
    "east timor": "Timor-Leste", "democratic republic of the congo": "Congo, The Democratic Republic of the",
}
DECISIONS = ("argmax", "cost")
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
    """Species x country presence (Species_Relevance.csv) keyed by ISO alpha-2 code."""

    presence: pd.DataFrame  # index binomial_name, columns ISO alpha-2 codes, values 0/1
    unmatched_countries: list[str]
    floor: float = 0.02  # an unlisted species keeps 2% of its probability: unlikely, never impossible

    @classmethod
    def from_csv(cls, path: str | Path, floor: float = 0.02) -> CountryPrior:

        table = read_user_csv(path, "species x country table", sep=";", index_col=0)
        codes, unmatched = {}, []
        for name in table.columns:
            code = _country_code_or_none(name)
            if code:
                codes[name] = code
            else:
                unmatched.append(name)
        presence = table[list(codes)].rename(columns=codes)
        presence = presence.T.groupby(level=0).max().T  # two names of one country: present if either says so
        presence.index = [normalise_name(str(n)) for n in presence.index]
        presence = presence[~presence.index.duplicated()]
        return cls(presence=presence.astype(np.int8), unmatched_countries=unmatched, floor=floor)

    @staticmethod
    def country_code(country: str) -> str:
        code = _country_code_or_none(country)
        if code is None:
            raise SnakewebError(f"Unknown country {country!r}; give an ISO code such as US or a name such as Germany.")
        return code

    def weights(self, species_names: list[str], country: str | None) -> np.ndarray:
        """Per-species multipliers for one country: 1 where present, `floor` where absent, 1 where the table
        knows nothing (species not in the table, or no/unknown country)."""
        weights = np.ones(len(species_names))
        if not country or country not in self.presence.columns:
            return weights
        column = self.presence[country]
        for i, name in enumerate(species_names):
            if name in column.index:
                weights[i] = 1.0 if column[name] else self.floor
        return weights

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
        matched = sum(name in self.presence.index for name in species_names)
        return {"species_matched": matched, "species_total": len(species_names),
                "countries_matched": int(self.presence.shape[1]), "countries_unmatched": len(self.unmatched_countries)}


def _country_code_or_none(name: str) -> str | None:
    import pycountry

    key = " ".join(str(name).strip().lower().split())
    key = FORMER_COUNTRY_NAMES.get(key, key)
    key = key.replace("st ", "saint ", 1) if key.startswith("st ") else key
    for candidate in (key, key.replace(" ", "-")):
        try:
            return pycountry.countries.lookup(candidate).alpha_2
        except LookupError:
            continue
    try:
        return pycountry.countries.search_fuzzy(key)[0].alpha_2
    except LookupError:
        return None
