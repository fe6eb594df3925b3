"""The answer a person acts on, from one observation's calibrated class probabilities: p(venomous) first, then
the taxon at the finest rank the evidence supports (species, genus, family, else "unknown snake"), where the
answer came from, and whether the top species is outside its known range.

One module decides for the command line, the dashboard, the answers export and evaluation. It is pure NumPy:
callers hand it probabilities over the head's classes (label-map order), the classes' taxa and venom statuses,
and optionally per-row range records.

The order of the decision (documented in docs/decisions.md):
1. range: `prior` multiplies by the species x country weights (CountryPrior.weights); `filter` removes the
   species recorded there as not present (SpeciesNet's geofence), so sums at genus and family count only
   allowed species: the answer rolls up to the nearest allowed rank by itself.
2. rank roll-up: the top species if its probability reaches the species threshold, else the first of genus,
   family whose best summed probability reaches that rank's threshold, else abstain ("unknown snake").
   Thresholds are chosen on validation for a target precision (`choose_thresholds`) and saved with the head.
3. venom rule: an answer whose taxon is harmless is replaced by the same rank's taxon of the species that
   minimises expected Track2 cost (`decisions.cost_aware_choice`) when that species is venomous or of unknown
   venom status: a harmless answer is never given where the costs say "treat it as venomous".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError

RANKS = ("species", "genus", "family")
SOURCES = ("classifier", "rollup", "range_filter", "venom_rule", "abstain")
RANGE_MODES = ("prior", "filter")
VENOM_STATUSES = ("venomous", "harmless", "unknown")
UNKNOWN_TAXON = "unknown"
TARGET_PRECISION = 0.9
# a threshold needs this many validation observations answered at its rank: precision from 3 photos means nothing
MIN_ANSWERED = 10


@dataclass
class Taxa:
    """The head's classes (label-map order) with their genus, family and venom status.

    `genus_of`/`family_of` [K] index into `genera`/`families`; -1 where the class has no known taxon at that
    rank (a placeholder class, family "unknown"): such a class never counts towards a genus or family answer.
    A taxon's venom status is over the store's species in it: venomous (all venomous), harmless (all harmless),
    else unknown (mixed, or a member of unknown status): never harmless unless every member is.
    """

    class_ids: np.ndarray  # [K] int64
    names: list[str]  # [K] binomial names
    status: np.ndarray  # [K] venom status strings
    genera: list[str]
    families: list[str]
    genus_of: np.ndarray  # [K] int, -1 unknown
    family_of: np.ndarray  # [K] int, -1 unknown
    family_of_genus: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_species(cls, species: pd.DataFrame, class_ids) -> Taxa:
        """`species`: the store's species table (class_id, binomial_name, genus, venom_status, family);
        `class_ids`: the head's label map order. A class missing from the table is unknown in every respect."""
        table = species.set_index("class_id") if "class_id" in species.columns else species
        ids = np.asarray(class_ids, dtype=np.int64)

        def column(name: str) -> list:
            values = table[name] if name in table.columns else pd.Series(dtype=object)
            return [values.get(int(c)) for c in ids]

        names = [n if isinstance(n, str) and n else f"class {c}" for n, c in zip(column("binomial_name"), ids)]
        status = np.array([s if s in VENOM_STATUSES else "unknown" for s in column("venom_status")])
        genus = [g if isinstance(g, str) and g and g != UNKNOWN_TAXON else None for g in column("genus")]
        family = [f if isinstance(f, str) and f and f != UNKNOWN_TAXON else None for f in column("family")]
        genera = sorted({g for g in genus if g})
        families = sorted({f for f in family if f})
        g_index, f_index = {g: i for i, g in enumerate(genera)}, {f: i for i, f in enumerate(families)}
        return cls(
            class_ids=ids, names=names, status=status, genera=genera, families=families,
            genus_of=np.array([g_index.get(g, -1) if g else -1 for g in genus], dtype=np.int64),
            family_of=np.array([f_index.get(f, -1) if f else -1 for f in family], dtype=np.int64),
            family_of_genus={g: f for g, f in zip(genus, family) if g and f},
        )

    def __len__(self) -> int:
        return len(self.class_ids)

    def group(self, rank: str) -> tuple[np.ndarray, list[str]]:
        """(group index per class [K], group names) of a rank."""
        if rank == "species":
            return np.arange(len(self)), self.names
        if rank == "genus":
            return self.genus_of, self.genera
        if rank == "family":
            return self.family_of, self.families
        raise SnakewebError(f"Unknown rank {rank!r}; use one of {', '.join(RANKS)}.")

    def sums(self, probabilities: np.ndarray, rank: str) -> np.ndarray:
        """Summed probability per taxon of `rank`: [n, groups]. Classes of unknown taxon count nowhere."""
        groups, names = self.group(rank)
        if rank == "species":
            return probabilities
        out = np.zeros((len(probabilities), len(names)))
        known = groups >= 0
        np.add.at(out.T, groups[known], probabilities[:, known].T)
        return out

    def status_of_taxa(self, rank: str) -> np.ndarray:
        """Venom status per taxon of `rank` (see the class docstring)."""
        groups, names = self.group(rank)
        if rank == "species":
            return self.status
        out = []
        for g in range(len(names)):
            members = set(self.status[groups == g].tolist())
            out.append(members.pop() if len(members) == 1 else "unknown")
        return np.array(out)

    def possibly_venomous(self) -> np.ndarray:
        return self.status != "harmless"


@dataclass
class Thresholds:
    """Minimum probability to answer at each rank; None = never answer at that rank. Chosen on validation
    (`choose_thresholds`) and saved with the head."""

    species: float | None = None
    genus: float | None = None
    family: float | None = None
    target_precision: float = TARGET_PRECISION
    chosen_on: dict = field(default_factory=dict)  # validation figures behind each choice

    def of(self, rank: str) -> float | None:
        return getattr(self, rank)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> Thresholds | None:
        if not data:
            return None
        return cls(**{k: data.get(k) for k in ("species", "genus", "family")},
                   target_precision=float(data.get("target_precision", TARGET_PRECISION)), chosen_on=data.get("chosen_on", {}))


@dataclass
class Answers:
    """Per-row decisions [n]: `rank` is '' and `taxon` -1 where the answer abstains."""

    rank: np.ndarray  # str: species / genus / family / ''
    taxon: np.ndarray  # int: index into Taxa.group(rank) names, -1 abstain
    name: list[str]
    score: np.ndarray  # float: probability of the answered taxon, nan on abstain
    source: np.ndarray  # str: one of SOURCES
    venom_status: np.ndarray  # str: the answered taxon's venom status; unknown on abstain
    p_venomous: np.ndarray  # float: probability mass on venomous species
    p_unknown_venom: np.ndarray  # float: mass on species of unknown venom status (shown, counted as possibly venomous)
    unconstrained_top: np.ndarray  # int: argmax class index of the probabilities before any range change
    out_of_range: list[bool | None]
    class_index: np.ndarray  # int: the species' class index when rank is species, else -1
    probabilities: np.ndarray  # [n, K] after the range step


def out_of_range_flags(records: np.ndarray | None, top: np.ndarray) -> list[bool | None]:
    """Per row: the top species is recorded as not present in the row's country (True), recorded present
    (False), or the table cannot tell (None: no country, the species is not in the table, an empty cell).
    `records` [n, K]: 1 present, 0 not present, -1 no record (None when no row has a country)."""
    if records is None:
        return [None] * len(top)
    return [None if records[row, k] < 0 else bool(records[row, k] == 0) for row, k in enumerate(top)]


def decide(probabilities: np.ndarray, taxa: Taxa, thresholds: Thresholds | None, venom_weight: float = 1.0,
           rank: str | None = None, range_mode: str = "prior", range_weights: np.ndarray | None = None,
           records: np.ndarray | None = None, venom_rule: bool = True) -> Answers:
    """Answers for [n, K] calibrated probabilities (label-map order).

    `rank` fixes the rank (argmax there, no thresholds); else thresholds decide (None thresholds: species
    argmax). `range_weights` [n, K] are the prior's per-row multipliers (mode `prior`); `records` [n, K]
    (1 present, 0 recorded as not present, -1 no record: species not in the table, or no country for the row)
    give the range: mode `filter` removes the species recorded as not present (a species the table knows
    nothing about stays), and the out-of-range flag. Rows whose filter would remove every species are left
    unfiltered.
    """
    from snakeweb.decisions import cost_aware_choice

    if range_mode not in RANGE_MODES:
        raise SnakewebError(f"Unknown range mode {range_mode!r}; use one of {', '.join(RANGE_MODES)}.")
    if rank is not None and rank not in RANKS:
        raise SnakewebError(f"Unknown rank {rank!r}; use one of {', '.join(RANKS)}.")
    raw = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    n = len(raw)
    unconstrained_top = raw.argmax(1)
    probs, filtered = raw, np.zeros(n, bool)
    if range_mode == "prior" and range_weights is not None:
        probs = raw * range_weights
        probs /= probs.sum(1, keepdims=True)
    elif range_mode == "filter" and records is not None:
        allowed = records != 0
        usable = (raw * allowed).sum(1) > 0
        probs = np.where(usable[:, None] & ~allowed, 0.0, raw)
        probs /= probs.sum(1, keepdims=True)
        filtered = usable & ~allowed.all(1)
    out_of_range = out_of_range_flags(records, unconstrained_top)

    per_rank = {r: taxa.sums(probs, r) for r in RANKS}
    best = {r: (per_rank[r].argmax(1) if per_rank[r].shape[1] else np.full(n, -1)) for r in RANKS}
    best_p = {r: (per_rank[r].max(1) if per_rank[r].shape[1] else np.zeros(n)) for r in RANKS}
    answer_rank = np.full(n, "", dtype=object)
    source = np.full(n, "abstain", dtype=object)
    if rank is not None:
        answer_rank[best[rank] >= 0] = rank
        source[best[rank] >= 0] = "classifier"
    elif thresholds is None:
        answer_rank[:], source[:] = "species", "classifier"
    else:
        for r in RANKS:
            t = thresholds.of(r)
            take = (answer_rank == "") & (best[r] >= 0) & (t is not None) & (best_p[r] >= (t if t is not None else math.inf))
            answer_rank[take] = r
            source[take] = "classifier" if r == "species" else "rollup"
    taxon = np.array([best[r][i] if r else -1 for i, r in enumerate(answer_rank)], dtype=np.int64)

    statuses = {r: taxa.status_of_taxa(r) for r in RANKS}
    venomous = taxa.status == "venomous"
    p_venomous = probs @ venomous.astype(np.float64)
    p_unknown = probs @ (taxa.status == "unknown").astype(np.float64)
    if venom_rule and len(taxa):
        possibly = taxa.possibly_venomous()
        safe = cost_aware_choice(probs, possibly, venom_weight)
        for i, r in enumerate(answer_rank):
            if not r or statuses[r][taxon[i]] != "harmless" or not possibly[safe[i]]:
                continue
            groups, _ = taxa.group(r)
            if groups[safe[i]] >= 0:
                taxon[i], source[i] = groups[safe[i]], "venom_rule"
    # an answer the filter changed says so (the venom rule's own change is reported as the venom rule)
    if filtered.any():
        unfiltered = decide(raw[filtered], taxa, thresholds, venom_weight, rank, "prior", None, None, venom_rule)
        rows = np.flatnonzero(filtered)
        for j, i in enumerate(rows):
            if (unfiltered.rank[j], unfiltered.taxon[j]) != (answer_rank[i], taxon[i]) and source[i] != "venom_rule":
                source[i] = "range_filter"
    names, scores, status_out, class_index = [], np.full(n, np.nan), np.full(n, "unknown", dtype=object), np.full(n, -1)
    for i, r in enumerate(answer_rank):
        if not r:
            names.append("unknown snake")
            continue
        _, group_names = taxa.group(r)
        names.append(group_names[taxon[i]])
        scores[i] = per_rank[r][i, taxon[i]]
        status_out[i] = statuses[r][taxon[i]]
        if r == "species":
            class_index[i] = taxon[i]
    return Answers(rank=answer_rank, taxon=taxon, name=names, score=scores, source=source, venom_status=status_out,
                   p_venomous=p_venomous, p_unknown_venom=p_unknown, unconstrained_top=unconstrained_top,
                   out_of_range=out_of_range, class_index=class_index, probabilities=probs)


def correct_at_rank(answers: Answers, truth_index: np.ndarray, taxa: Taxa) -> np.ndarray:
    """Per row: the answer names the true taxon at the rank it answered (False on abstain)."""
    out = np.zeros(len(truth_index), bool)
    for r in RANKS:
        groups, _ = taxa.group(r)
        rows = answers.rank == r
        out[rows] = (groups[truth_index[rows]] == answers.taxon[rows]) & (answers.taxon[rows] >= 0)
    return out


def choose_thresholds(probabilities: np.ndarray, truth_index: np.ndarray, taxa: Taxa,
                      target: float = TARGET_PRECISION, min_answered: int = MIN_ANSWERED) -> Thresholds:
    """Per rank in turn (species, then genus on the rows species did not answer, then family), the lowest
    threshold whose answers on these validation observations are at least `target` correct, with at least
    `min_answered` of them; None for a rank where no threshold does. The candidates are the observed top
    probabilities, so the choice is exact on validation. Rows are observations: probabilities [n, K],
    truth_index [n] head indices."""
    probs = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    truth_index = np.asarray(truth_index, dtype=np.int64)
    remaining = np.ones(len(probs), bool)
    chosen: dict[str, float | None] = {}
    figures: dict[str, dict] = {}
    for r in RANKS:
        groups, _ = taxa.group(r)
        sums = taxa.sums(probs, r)
        if not sums.shape[1] or not remaining.any():
            chosen[r] = None
            continue
        best, best_p = sums.argmax(1), sums.max(1)
        correct = (groups[truth_index] == best) & (groups[truth_index] >= 0)
        rows = np.flatnonzero(remaining)
        order = rows[np.argsort(-best_p[rows], kind="stable")]
        hits = np.cumsum(correct[order])
        answered = np.arange(1, len(order) + 1)
        precision = hits / answered
        # answering the top m rows: valid where precision holds and the next row has a lower score (a threshold
        # cannot split equal scores)
        distinct = np.append(best_p[order][1:] < best_p[order][:-1], True)
        ok = np.flatnonzero((precision >= target) & (answered >= min_answered) & distinct)
        if not len(ok):
            chosen[r] = None
            figures[r] = {"answered": 0, "precision": None, "candidates": int(len(order))}
            continue
        m = ok[-1]  # the most rows answered while still at the target precision
        chosen[r] = float(best_p[order][m])
        figures[r] = {"answered": int(m + 1), "precision": round(float(precision[m]), 4), "candidates": int(len(order))}
        remaining[order[: m + 1]] = False
    figures["observations"] = int(len(probs))
    return Thresholds(species=chosen["species"], genus=chosen["genus"], family=chosen["family"], target_precision=target,
                      chosen_on=figures)
