"""What an identification is: the fields of schemas/identification.schema.json, the venom level and headline a
first responder reads first, and the answer's sentence. `snakeweb.identify.Identifier` fills them; the command
line, the dashboard and the tests read them from here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = "snakeweb.identification/1"
# p(venomous) (with unknown-status species counted as possibly venomous) at or above which the answer is "danger",
# and at or above which it is at least "caution". Deliberately cautious: a first responder acts on this, and a
# missed viper costs far more than a wary look at a grass snake.
DANGER_AT = 0.5
CAUTION_AT = 0.1
# a venomous or unknown-status species at least this likely (before or after the range step) is named under the
# venom headline (dashboard banner, identify's text), wherever it ranks: a flat distribution can put a viper sixth at 8%
NAME_POSSIBLY_VENOMOUS_FROM = 0.05
VENOM_LEVELS = ("danger", "caution", "harmless", "unknown")


def venom_level(result) -> str:
    """danger / caution / harmless / unknown, for the banner's colour and the CLI's first line. Harmless (the
    all-clear) needs all of: a low venomous probability, a named answer known to be harmless that the classifier
    gave (not the range step) at a confidence its rank's threshold accepts (so not where validation was too small to
    choose one), a photo the store knows to be like its snakes (not where it cannot tell), a top species not outside
    its range, and, with a country, one where the table records some of the store's snakes. "unknown" means no
    all-clear, not that the answer's venom status is unknown: `no_all_clear_reason` says which of these failed."""
    possibly = result.p_venomous + result.p_unknown_venom
    if possibly >= DANGER_AT:
        return "danger"
    if possibly >= CAUTION_AT:
        return "caution"
    return "unknown" if no_all_clear_reason(result) else "harmless"


def no_all_clear_reason(result) -> str:
    """Why a low-risk answer gets no all-clear (venom level "unknown"), in words that fit after "no all-clear: ";
    "" when it gets one. A harmless species named with a known status (Pantherophis guttatus) on a store too small
    to tell whether the photo is like its snakes read "VENOM STATUS UNKNOWN" beside "harmless": the status was
    known, the all-clear was what was missing."""
    if result.country and not result.country_prior_applied:
        # the store's species table knows nothing of the snakes of this country
        return f"the species x country table records none of this store's snakes in {result.country}"
    if result.prediction_source not in ("classifier", "rollup"):
        return {"range_filter": "the answer was made by the country check, not the classifier",
                "venom_rule": "a harmless answer was withheld by the venom rule"}.get(result.prediction_source,
                                                                                        "no taxon was likely enough to name")
    if result.out_of_range:
        return "the top species is not recorded in this country"
    if result.out_of_store:
        return "the photo is unlike every snake in this store"
    if result.out_of_store is None:
        # too few validation snakes to calibrate the check (a cottonmouth got the all-clear as a grass snake)
        return "the store cannot tell whether the photo is like its snakes (too few validation photos to calibrate that check)"
    decision = (result.provenance or {}).get("decision") or {}
    threshold = (decision.get("thresholds") or {}).get(result.prediction_rank or "")
    if threshold is None:
        return f"validation was too small to choose the confidence a {result.prediction_rank or 'named'} answer needs"
    if (result.prediction_score or 0) < threshold:
        return (f"the answer's confidence ({_percent(result.prediction_score or 0)}) is below the {_percent(threshold)} "
                f"validation needs at {result.prediction_rank} rank")
    if result.venom_status == "harmless" and result.prediction_rank is not None:
        return ""
    return ("the answer's venom status is unknown" if result.venom_status == "unknown" or result.prediction_rank is None
            else "the answer is not a harmless taxon")


def venom_headline(p_venomous: float, p_unknown: float, unlike_the_store: bool = False) -> str:
    """What a first responder reads first: "Venomous: 87% likely", with the unknown-status share beside it, and,
    for a photo unlike every snake in the store (`unlike_the_store`), that the figure says little."""
    text = f"Venomous: {_percent(p_venomous)} likely"
    total = p_venomous + p_unknown
    if p_unknown >= 0.005 or any(p_venomous < edge <= total for edge in (CAUTION_AT, DANGER_AT)):
        # the level is set by the two together: their sum is shown, rounded as a level allows (45% and 4.99% read as
        # 50% beside a caution banner; 9.8% and 0.3%, a caution, hid the 0.3%)
        # "treat it so" only where the sum sets a warning level: the all-clear read "... 3% possibly venomous in all, treat it so"
        text += (f" (and {_percent(p_unknown)} on species of unknown venom status: {_percent(total)} possibly venomous in all"
                 + (", treat it so)" if total >= CAUTION_AT else ")"))
    if unlike_the_store:
        # a flat green image read "Venomous: 69% likely": the head must share its probability among the store's
        # species, whatever the photo shows; the level stays (it may be a snake the store has never seen)
        text += ", but the photo is unlike every snake in this store, so this figure says little"
    return text


def _percent(share: float) -> str:
    """A whole percentage, or one decimal where rounding would reach a venom level's edge (9.8% was shown as 10%,
    the caution level, beside the low-risk banner)."""
    text = f"{share:.1%}" if 0 < share < 0.01 else f"{share:.0%}"  # (a share under 1% is not "0%")
    if any(share < edge <= float(text.rstrip("%")) / 100 for edge in (CAUTION_AT, DANGER_AT)):
        # just below an edge: round down at one decimal (49.96% -> 49.9%), which no rounding can carry to the edge
        text = f"{math.floor(share * 1000) / 10:.1f}%"
    return text




def answer_sentence(result, unconstrained_top: str, country: str | None) -> str:
    """The answer at its rank, and where it came from, in one or two sentences."""
    name, rank = result.prediction, result.prediction_rank
    family = f" ({result.prediction_family})" if result.prediction_family and rank != "family" else ""
    if rank is None and result.prediction_source == "venom_rule":
        text = (f"Not named: the likeliest answer is a harmless snake, but venomous species carry {_percent(result.p_venomous)} "
                "of the probability, too much to call it harmless. Treat it as possibly venomous.")
    elif rank is None and result.uncertain:
        text = ("Not named: no species reaches the confidence asked for (--uncertain-below); the candidates below are "
                "possibilities, not an identification.")
    elif rank is None and result.out_of_store:
        text = "Not named: this does not look like a snake in this store; the candidates below are guesses."
    elif rank is None:
        text = ("Unknown snake: no species, genus or family is likely enough to name with the precision chosen on "
                "validation; the candidates are listed below.")
    else:
        score = f"{result.prediction_score:.0%}"
        text = {
            "species": f"{name}{family}, {score}" + (": the classifier's most likely species."
                                                     if result.prediction_source == "classifier" else "."),
            "genus": f"Genus {name}{family}: species uncertain; the genus carries {score}.",
            "family": f"Family {name}: genus and species uncertain; the family carries {score}.",
        }[rank]
        if result.prediction_source == "venom_rule":
            text += (" Given as the venom-aware call: the likeliest taxon at this rank holds no venomous species the "
                     f"classifier knows, and venomous species carry {_percent(result.p_venomous)} of the probability.")
        elif result.prediction_source == "range_filter" and country:
            done = "left out" if result.range_mode == "filter" else "down-weighted"
            text += f" The country check changed the answer: species not recorded in {country} were {done}."
    if result.out_of_range:
        text += (f" The most likely species before the country check, {unconstrained_top}, is outside its known range"
                 f"{' (not recorded in ' + country + ')' if country else ''}: a possible escaped pet or range extension; "
                 "worth a reviewer's look.")
    return text


def explanation(result: Identification, venomous_mass: float, unknown_mass: float = 0.0, venom_weight: float = 1.0) -> str:
    """The closing sentence of an identification: why the venom-aware call is what it is (shares as `_percent`
    writes them; `venom_weight` scales the Track2 cost of a venomous snake called harmless, 5 by default)."""
    top, safe = result.species[0], result.venom_aware
    lead = ""
    if result.uncertain:
        candidates = ", ".join(s.binomial_name for s in result.species[:3])
        lead = f"Uncertain: no species reaches the confidence you asked for; the candidates are {candidates}. "
    mass = f"venomous species carry {_percent(venomous_mass)} of the probability"
    if unknown_mass >= 0.005:
        mass += f", species of unknown venom status {_percent(unknown_mass)} (treated as possibly venomous)"
    if result.prediction_rank is None:
        return lead + f"No taxon is named; the {mass}."
    if safe is not None and safe.class_id != top.class_id:
        return lead + (
            f"The {mass}, so the venom-aware call is {safe.binomial_name} (mistaking a venomous snake for a harmless "
            f"one costs {5 * venom_weight:g}x a harmless mix-up)."
        )
    return lead + f"The venom-aware call agrees with the most likely species ({mass})."


@dataclass
class SpeciesCandidate:
    class_id: int
    binomial_name: str
    probability: float
    venom_status: str  # venomous / harmless / unknown (never read as harmless)
    venomous: bool | None  # the same as a flag: None when unknown
    genus: str | None = None
    family: str | None = None


@dataclass
class InputFailure:
    """A photo that could not be used, by its position among the inputs (file names may repeat)."""

    index: int  # 0-based position in the inputs
    name: str
    reason: str


@dataclass
class Neighbour:
    image_id: int
    path: str
    class_id: int | None
    binomial_name: str | None
    similarity: float


@dataclass
class Identification:
    """One observation's identification: the fields of schemas/identification.schema.json (SCHEMA_VERSION)."""

    schema: str = SCHEMA_VERSION
    inputs: list[str] = field(default_factory=list)
    # the answer (snakeweb.answers.decide): the taxon at the rank the evidence supports, and where it came from
    prediction: str = ""  # a binomial, a genus, a family, or "unknown snake"
    prediction_class_id: int | None = None  # set when the answer is a species
    prediction_rank: str | None = None  # species / genus / family; None when abstaining
    prediction_score: float | None = None  # probability of the answered taxon (after the range step)
    prediction_source: str = "abstain"  # classifier / rollup / range_filter / venom_rule / abstain
    prediction_family: str | None = None  # the answered taxon's family, when known
    p_venomous: float = 0.0  # calibrated probability mass on venomous species
    p_unknown_venom: float = 0.0  # mass on species of unknown venom status (counted as possibly venomous)
    venom_status: str = "unknown"  # of the answered taxon: venomous / harmless / unknown (mixed or unknown)
    out_of_range: bool | None = None  # the top species is not recorded in the country; None: cannot tell
    out_of_store: bool | None = False  # True: farther from every reference than validation snakes ever are
    headline: str = ""  # "Venomous: 87% likely": what a first responder reads first
    venom_level: str = "unknown"  # danger / caution / harmless / unknown (see venom_level)
    answer_text: str = ""  # the answer at its rank and its source, in words
    raw_top_k: list[SpeciesCandidate] = field(default_factory=list)  # the head's output before any prior or rule
    unconstrained_top: SpeciesCandidate | None = None  # the head's top species before the range step
    species: list[SpeciesCandidate] = field(default_factory=list)  # top-k after the range step
    neighbours: list[Neighbour] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)  # inputs that could not be used, and why
    country: str | None = None  # ISO alpha-2 code of the country given, if any
    range_mode: str = "prior"
    country_prior_applied: bool = False  # False when no country was given or the table has no records for it
    notes: list[str] = field(default_factory=list)  # sentences a reader must see (e.g. no records for the country)
    uncertain: bool = False  # top probability below the user's threshold: candidates, not an answer
    venom_aware: SpeciesCandidate | None = None  # the class minimising expected Track2 cost
    # every venomous or unknown-status species >= NAME_POSSIBLY_VENOMOUS_FROM, at the larger of its probabilities
    # before and after the range step (a filtered-out rattlesnake is still named), most likely first
    possibly_venomous: list[SpeciesCandidate] = field(default_factory=list)
    explanation: str = ""
    provenance: dict = field(default_factory=dict)  # snakeweb version, model, head, store, decision settings

    def to_json(self) -> dict:
        return asdict(self)
