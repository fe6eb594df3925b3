"""The answer a person acts on, from one observation's calibrated class probabilities: p(venomous) first, then
the taxon at the finest rank the evidence supports (species, genus, family, else "unknown snake"), where the
answer came from, and whether the top species is outside its known range.

One module decides for the command line, the dashboard, the answers export and evaluation. It is pure NumPy:
callers hand it probabilities over the head's classes (label-map order), the classes' taxa and venom statuses,
and optionally per-row range records.

The order of the decision (documented in docs/decisions.md):
1. range: `prior` multiplies by the species x country weights (CountryPrior.weights); `filter` (SpeciesNet's
   geofence) names no species recorded there as not present, and no genus or family without a species that may
   be named, with the photo's own probabilities (not renormalised): the answer rolls up to the nearest rank that
   may be named by itself. The range step never lowers p(venomous), and the venom rule also looks at the
   probabilities before it.
2. rank roll-up: the top species if its probability reaches the species threshold, else the first of genus,
   family whose best summed probability reaches that rank's threshold, else abstain ("unknown snake").
   Thresholds are chosen on validation for a target precision (`snakeweb.threshold_choice.choose_thresholds`) and saved with the head.
3. venom rule: when the answer's taxon is harmless but the species that minimises expected Track2 cost
   (`decisions.cost_aware_choice`, venom weight chosen on validation) is venomous or of unknown venom status,
   no taxon is named ("unknown snake", source venom_rule, venom status unknown): a harmless answer is never
   given where the costs say "treat it as venomous". With a fixed rank the answer is instead that species'
   taxon at the rank asked for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.options import RANGE_MODES, RANKS  # defined there so the command line offers them without pandas

SOURCES = ("classifier", "rollup", "range_filter", "venom_rule", "abstain")
VENOM_STATUSES = ("venomous", "harmless", "unknown")
UNKNOWN_TAXON = "unknown"
TARGET_PRECISION = 0.9
# how thresholds are chosen: a head whose thresholds were chosen another way gets them chosen again (train stage)
THRESHOLD_METHOD = "species+genus jointly, then family; answer venom weight/4"


@dataclass
class Taxa:
    """The head's classes (label-map order) with their genus, family and venom status.

    `genus_of`/`family_of` [K] index into `genera`/`families`; -1 where the class has no known taxon at that
    rank (a placeholder class, family "unknown"): such a class never counts towards a genus or family answer.
    A taxon's venom status is over every species of it in the store's species table, not only the head's
    (a family of harmless species in the head may hold venomous ones the head never learnt, and a photo of one
    of those rolls up to it): venomous (all venomous), harmless (all harmless), else unknown (mixed, or a
    member of unknown status): never harmless unless every member is.
    """

    class_ids: np.ndarray  # [K] int64
    names: list[str]  # [K] binomial names
    status: np.ndarray  # [K] venom status strings
    genera: list[str]
    families: list[str]
    genus_of: np.ndarray  # [K] int, -1 unknown
    family_of: np.ndarray  # [K] int, -1 unknown
    family_of_genus: dict[str, str] = field(default_factory=dict)
    taxon_status: dict[str, dict[str, str]] = field(default_factory=dict)  # rank -> taxon name -> venom status
    # membership matrices and taxon statuses, derived once: identify calls decide once per observation
    _derived: dict = field(default_factory=dict, repr=False, compare=False)

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
        taxon_status = {}
        for rank in ("genus", "family"):
            if rank in table.columns:
                statuses = table["venom_status"].where(table["venom_status"].isin(VENOM_STATUSES), "unknown")
                grouped = statuses.groupby(table[rank]).agg(lambda v: v.iloc[0] if v.nunique() == 1 else "unknown")
                taxon_status[rank] = grouped.to_dict()
        return cls(
            class_ids=ids, names=names, status=status, genera=genera, families=families,
            genus_of=np.array([g_index.get(g, -1) if g else -1 for g in genus], dtype=np.int64),
            family_of=np.array([f_index.get(f, -1) if f else -1 for f in family], dtype=np.int64),
            family_of_genus={g: f for g, f in zip(genus, family) if g and f}, taxon_status=taxon_status,
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
        """Summed probability per taxon of `rank`: [n, groups]. Classes of unknown taxon count nowhere. One
        matrix product with the class -> taxon membership (on 1,784 classes x thousands of rows it is far faster
        than scattering)."""
        probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
        groups, names = self.group(rank)
        if rank == "species":
            return probabilities
        if ("membership", rank) not in self._derived:
            known = groups >= 0
            membership = np.zeros((len(self), len(names)))
            membership[np.flatnonzero(known), groups[known]] = 1.0
            self._derived["membership", rank] = membership
        return probabilities @ self._derived["membership", rank]

    def best(self, probabilities: np.ndarray, rank: str) -> tuple[np.ndarray, np.ndarray]:
        """(most likely taxon of `rank` per row [n], its summed probability [n]); -1 and 0 where the rank has no
        taxa at all (e.g. no class has a known family)."""
        sums = self.sums(probabilities, rank)
        if not sums.shape[1]:
            return np.full(len(sums), -1), np.zeros(len(sums))
        return sums.argmax(1), sums.max(1)

    def scored(self, probabilities: np.ndarray, truth_index: np.ndarray, rank: str) -> tuple[np.ndarray, np.ndarray]:
        """(top score at `rank` [n], whether that top taxon is the true class's [n]): the pair every precision at
        a rank is measured from. A true class without a taxon at `rank` is never matched."""
        taxon, score = self.best(probabilities, rank)
        groups, _ = self.group(rank)
        truth = groups[np.asarray(truth_index, dtype=np.int64)]
        return score, (taxon == truth) & (truth >= 0)

    def status_of_taxa(self, rank: str) -> np.ndarray:
        """Venom status per taxon of `rank` (see the class docstring)."""
        groups, names = self.group(rank)
        if rank == "species":
            return self.status
        if ("status", rank) in self._derived:
            return self._derived["status", rank]
        out = []
        for g, name in enumerate(names):
            members = set(self.status[groups == g].tolist())
            head_status = members.pop() if len(members) == 1 else "unknown"
            table_status = self.taxon_status.get(rank, {}).get(name, head_status)
            out.append(head_status if head_status == table_status else "unknown")
        self._derived["status", rank] = np.array(out)
        return self._derived["status", rank]

    def possibly_venomous(self) -> np.ndarray:
        return self.status != "harmless"


@dataclass
class Thresholds:
    """Minimum probability to answer at each rank; None = never answer at that rank. Chosen on validation
    (`snakeweb.threshold_choice.choose_thresholds`) and saved with the head."""

    species: float | None = None
    genus: float | None = None
    family: float | None = None
    target_precision: float = TARGET_PRECISION
    # the venom rule's weight on venomous errors for answers (>= the head's Track1 choice; see choose_answer_venom_weight)
    venom_weight: float | None = None
    chosen_on: dict = field(default_factory=dict)  # validation figures behind each choice

    def of(self, rank: str) -> float | None:
        return getattr(self, rank)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> Thresholds | None:
        if not data:
            return None
        return cls(**{k: data.get(k) for k in ("species", "genus", "family", "venom_weight")},
                   target_precision=float(data.get("target_precision", TARGET_PRECISION)), chosen_on=data.get("chosen_on", {}))


@dataclass
class Answers:
    """Per-row decisions [n]: `rank` is '' and `taxon` -1 where no taxon is named (source abstain or venom_rule)."""

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
    # int: the species that minimises expected Track2 cost, as the venom rule sees it (a possibly venomous species
    # the range step removed stays the call: the range never makes a snake look safer), -1 without species
    venom_aware: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    venom_aware_score: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float: its probability where it was chosen


def answer_venom_weight(thresholds: Thresholds | None, head_weight: float) -> float:
    """The venom rule's weight for answers: the one chosen with the thresholds (`choose_answer_venom_weight`),
    else the head's own (chosen by Track1)."""
    return thresholds.venom_weight if thresholds is not None and thresholds.venom_weight is not None else head_weight


def out_of_range_flags(records: np.ndarray | None, top: np.ndarray) -> list[bool | None]:
    """Per row: the top species is recorded as not present in the row's country (True), recorded present
    (False), or the table cannot tell (None: no country, the species is not in the table, an empty cell).
    `records` [n, K]: 1 present, 0 not present, -1 no record (None when no row has a country)."""
    if records is None:
        return [None] * len(top)
    return [None if records[row, k] < 0 else bool(records[row, k] == 0) for row, k in enumerate(top)]


def decide(probabilities: np.ndarray, taxa: Taxa, thresholds: Thresholds | None, venom_weight: float = 1.0,
           rank: str | None = None, range_mode: str = "prior", range_weights: np.ndarray | None = None,
           records: np.ndarray | None = None, venom_rule: bool = True, out_of_store: np.ndarray | None = None) -> Answers:
    """Answers for [n, K] calibrated probabilities (label-map order).

    `rank` fixes the rank (argmax there, no thresholds); else thresholds decide (None thresholds: species
    argmax); the thresholds' own venom weight, when chosen, replaces `venom_weight`. `range_weights` [n, K]
    are the prior's per-row multipliers (mode `prior`); `records` [n, K] (1 present, 0 recorded as not
    present, -1 no record: species not in the table, or no country for the row) give the range: mode
    `filter` names no species recorded as not present, and no genus or family without a species that may be
    named, with the probabilities not renormalised (a species the table knows nothing about may be named),
    and the out-of-range flag. Rows whose filter would remove every species are left unfiltered. Rows where
    `out_of_store` [n] is True (the photos are unlike every reference) name no taxon (source abstain).
    """
    from snakeweb.decisions import cost_aware_choice

    venom_weight = answer_venom_weight(thresholds, venom_weight)
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
        filtered = ~np.all(range_weights == range_weights[:, :1], axis=1)  # rows the prior could change
    may_name = None  # with the range filter, per rank [n, taxa]: a taxon may be named when one of its species may be
    if range_mode == "filter" and records is not None:
        # the filter decides what may be named, never how sure the photo makes us: the probabilities are not
        # renormalised (a species at 1.6% was once named at 100% because it was the only one recorded there), and a
        # genus or family with a species that may be named keeps the photo's whole evidence for it, so a rattlesnake
        # whose species is not recorded rolls up to its genus, not to another genus's species
        allowed = records != 0
        usable = (raw * allowed).sum(1) > 0
        nameable = ~usable[:, None] | allowed
        probs = np.where(nameable, raw, 0.0)
        filtered = usable & ~allowed.all(1)
        may_name = {r: taxa.sums(nameable.astype(np.float64), r) > 0 for r in RANKS}
    out_of_range = out_of_range_flags(records, unconstrained_top)

    if may_name is not None:
        per_rank = {r: probs if r == "species" else np.where(may_name[r], taxa.sums(raw, r), 0.0) for r in RANKS}
    else:
        per_rank = {r: taxa.sums(probs, r) for r in RANKS}
    best, best_p = {}, {}
    for r in RANKS:
        sums = per_rank[r]
        best[r] = np.where(sums.max(1) > 0, sums.argmax(1), -1) if sums.shape[1] else np.full(n, -1)
        best_p[r] = sums.max(1) if sums.shape[1] else np.zeros(n)
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
    if out_of_store is not None:  # a photo unlike every reference is no evidence for any taxon
        unlike = np.asarray(out_of_store, dtype=bool)
        answer_rank[unlike], source[unlike] = "", "abstain"
    taxon = np.array([best[r][i] if r else -1 for i, r in enumerate(answer_rank)], dtype=np.int64)

    statuses = {r: taxa.status_of_taxa(r) for r in RANKS}
    venomous = taxa.status == "venomous"
    # the range step may change which species is named, never make a snake look safer than the photo does: a
    # rattlesnake photographed where no rattlesnake is recorded is an escaped pet until shown otherwise
    p_venomous = np.maximum(probs @ venomous.astype(np.float64), raw @ venomous.astype(np.float64))
    p_unknown = np.maximum(probs @ (taxa.status == "unknown").astype(np.float64), raw @ (taxa.status == "unknown").astype(np.float64))
    # each share is the larger of before and after the range step, so together they could pass 100% (72% venomous
    # and 51% unknown): the unknown share is what the venomous share leaves at most
    p_unknown = np.minimum(p_unknown, np.clip(1.0 - p_venomous, 0.0, None))
    safe, safe_score, from_raw = np.full(n, -1, np.int64), np.full(n, np.nan), np.zeros(n, bool)
    if len(taxa):
        possibly = taxa.possibly_venomous()
        safe = cost_aware_choice(probs, possibly, venom_weight)
        safe_raw = cost_aware_choice(raw, possibly, venom_weight) if probs is not raw else safe
        from_raw = possibly[safe_raw] & ~possibly[safe]
        safe = np.where(from_raw, safe_raw, safe)
        safe_score = np.where(from_raw, raw[np.arange(n), safe], probs[np.arange(n), safe])
    if venom_rule and len(taxa):
        # taxa holding a possibly venomous class of the head: a genus such as Agkistrodon is "mixed" in SnakeCLEF's
        # table (two species flagged harmless), yet every Agkistrodon the head knows is venomous
        holds_venomous = {r: taxa.sums(possibly.astype(np.float64), r)[0] > 0 for r in RANKS}
        for i, r in enumerate(answer_rank):
            if not r or not possibly[safe[i]]:
                continue
            groups, _ = taxa.group(r)
            if rank is not None and groups[safe[i]] >= 0:  # a fixed rank: the venom-aware species' taxon there
                if holds_venomous[r][taxon[i]] or groups[safe[i]] == taxon[i]:
                    continue
                # ... where it may be named; one the range filter removed is not named (the headline stays)
                if may_name is None or may_name[r][i, groups[safe[i]]]:
                    taxon[i], source[i] = groups[safe[i]], "venom_rule"
                else:
                    answer_rank[i], taxon[i], source[i] = "", -1, "venom_rule"
                continue
            if statuses[r][taxon[i]] == "harmless":  # never name a harmless taxon the costs say to treat as venomous
                answer_rank[i], taxon[i], source[i] = "", -1, "venom_rule"  # no name: "possibly venomous"
    # an answer the range step changed says so (the venom rule's own change is reported as the venom rule)
    if filtered.any():
        unfiltered = decide(raw[filtered], taxa, thresholds, venom_weight, rank, "prior", None, None, venom_rule)
        rows = np.flatnonzero(filtered)
        for j, i in enumerate(rows):
            if (unfiltered.rank[j], unfiltered.taxon[j]) != (answer_rank[i], taxon[i]) and source[i] not in ("venom_rule", "abstain"):
                source[i] = "range_filter"
    names, scores, status_out, class_index = [], np.full(n, np.nan), np.full(n, "unknown", dtype=object), np.full(n, -1)
    for i, r in enumerate(answer_rank):
        if not r:
            names.append("unknown snake")
            continue
        _, group_names = taxa.group(r)
        names.append(group_names[taxon[i]])
        scores[i] = per_rank[r][i, taxon[i]]
        if source[i] == "venom_rule" and from_raw[i]:  # a species the range step removed: its probability before it
            scores[i] = taxa.sums(raw[i:i + 1], r)[0, taxon[i]]
        status_out[i] = statuses[r][taxon[i]]
        if r == "species":
            class_index[i] = taxon[i]
    return Answers(rank=answer_rank, taxon=taxon, name=names, score=scores, source=source, venom_status=status_out,
                   p_venomous=p_venomous, p_unknown_venom=p_unknown, unconstrained_top=unconstrained_top,
                   out_of_range=out_of_range, class_index=class_index, probabilities=probs, venom_aware=safe,
                   venom_aware_score=safe_score)


def correct_at_rank(answers: Answers, truth_index: np.ndarray, taxa: Taxa) -> np.ndarray:
    """Per row: the answer names the true taxon at the rank it answered (False on abstain)."""
    out = np.zeros(len(truth_index), bool)
    for r in RANKS:
        groups, _ = taxa.group(r)
        rows = answers.rank == r
        out[rows] = (groups[truth_index[rows]] == answers.taxon[rows]) & (answers.taxon[rows] >= 0)
    return out
