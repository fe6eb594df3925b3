"""Identify new photos of one animal against a store: species with probabilities and venom flags, and the
nearest reference images. The command line and the dashboard both call `Identifier.identify`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.aggregate import combine, top_k
from snakeweb.decisions import CountryPrior, cost_aware_choice
from snakeweb.embed import embed_images
from snakeweb.errors import SnakewebError
from snakeweb.index import load_index
from snakeweb.search import image_catalogue, search_images
from snakeweb.species import UNKNOWN, VENOMOUS, possibly_venomous_mask
from snakeweb.stages import load_head, store_backbone
from snakeweb.store import Store


@dataclass
class SpeciesCandidate:
    class_id: int
    binomial_name: str
    probability: float
    venom_status: str  # venomous / harmless / unknown (never read as harmless)
    venomous: bool | None  # the same as a flag: None when unknown


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
    inputs: list[str]
    species: list[SpeciesCandidate] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)  # inputs that could not be used, and why
    country: str | None = None  # ISO alpha-2 code of the country given, if any
    country_prior_applied: bool = False  # False when no country was given or the table has no records for it
    notes: list[str] = field(default_factory=list)  # sentences a reader must see (e.g. no records for the country)
    uncertain: bool = False  # top probability below the user's threshold: candidates, not an answer
    # True: farther from every reference than validation snakes ever are; None: the store cannot tell (it had
    # too few validation photos to choose a threshold), never a silent False
    out_of_store: bool | None = False
    venom_aware: SpeciesCandidate | None = None  # the class minimising expected Track2 cost
    explanation: str = ""

    def to_json(self) -> dict:
        return asdict(self)


class Identifier:
    """Loads a store's backbone, head and index once; identifies any number of observations."""

    def __init__(self, store: Store, device: str | None = None, country_table: str | Path | None = None):
        self.store = store.require()
        table = country_table or store.get_meta("country_table")
        self.prior, self.prior_error = None, None
        try:
            self.prior = CountryPrior.from_csv(table) if table else None
        except SnakewebError as exc:
            if country_table:  # the table the user passed: say so now
                raise
            # the table recorded at ingest has moved or changed: identify without a country still works
            self.prior_error = f"{exc} (the species x country table recorded when the store was built); pass --country-table."
        self.backbone = store_backbone(store, device)
        self.feature_kind = store.get_meta("feature_kind")
        self.head = load_head(store)
        self.index = load_index(store.index_path)
        self.species = store.species().set_index("class_id")
        self.names = self.species["binomial_name"].to_dict()
        self.venom_status = self.species["venom_status"].to_dict()
        if self.prior is not None and country_table:
            self.prior.require_species(self.species["binomial_name"].tolist())
        self.catalogue = image_catalogue(store)
        self.novelty = store.get_meta("novelty")

    def embed(self, sources: list[tuple[str, str | Path | bytes]]) -> tuple[list[int], np.ndarray, list[InputFailure]]:
        """(positions of the usable inputs, their vectors [n, d], failures). Inputs are keyed by position, so
        three uploads all named image.jpg each get their own vector or failure."""
        positions, vectors, failures = [], [], []
        items = [(i, source) for i, (_, source) in enumerate(sources)]
        seen: dict[str, int] = {}  # sha256 -> first position: the same photo twice must not count twice
        for batch in embed_images(self.backbone, items, self.feature_kind, batch_size=16):
            for position, decoded, vector, error in zip(batch.keys, batch.decoded, batch.vectors, batch.errors):
                if not error and decoded.sha256 in seen:
                    error = f"it is the same file as photo {seen[decoded.sha256] + 1}, which is counted once"
                if error:
                    failures.append(InputFailure(int(position), str(sources[position][0]), error))
                else:
                    seen[decoded.sha256] = int(position)
                    positions.append(int(position))
                    vectors.append(vector)
        return positions, (np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)), failures

    def identify(
        self, sources: list[tuple[str, str | Path | bytes]], top: int = 5, neighbours: int = 12,
        aggregation: str = "mean-log", country: str | None = None, uncertain_below: float = 0.0,
    ) -> Identification:
        """`sources` are (name, path or bytes) photos of one animal: they form one observation.

        `top` >= 1 species and `neighbours` >= 0 reference images are returned; `country` is an ISO code or
        name (a CountryError for anything that is not exactly one country). Raises SnakewebError when no photo
        can be read.
        """
        if top < 1 or neighbours < 0 or not 0.0 <= uncertain_below <= 1.0:
            raise SnakewebError("Ask for at least 1 species, 0 or more reference images, and an uncertainty threshold in 0..1.")
        code = None
        if country:
            if self.prior_error:
                raise SnakewebError(self.prior_error)
            if self.prior is None:
                raise SnakewebError("A country needs the species x country table: pass --country-table Species_Relevance.csv.")
            code = CountryPrior.country_code(country)
        positions, vectors, failures = self.embed(sources)
        result = Identification(inputs=[str(n) for n, _ in sources], failures=failures, country=code)
        if not positions:
            raise SnakewebError("None of the photos could be read: " + "; ".join(f"{f.name}: {f.reason}" for f in failures))
        probabilities = combine(self.head.predict_log_proba(vectors, self.index), aggregation)
        if code:
            class_names = [self.names.get(int(c), "") for c in self.head.label_map.class_ids]
            note = self.prior.note(code, class_names)
            if note:
                result.notes.append(note)
            else:
                probabilities = self.prior.apply(probabilities[None, :], class_names, [code])[0]
                result.country_prior_applied = True
        indices, probs = top_k(probabilities[None, :], top)
        result.species = [self.candidate(int(c), float(p)) for c, p in zip(self.head.label_map.to_class_ids(indices[0]), probs[0])]
        possibly_venomous = possibly_venomous_mask(self.species, self.head.label_map.class_ids)
        chosen = int(cost_aware_choice(probabilities[None, :], possibly_venomous, self.head.venom_weight)[0])
        result.venom_aware = self.candidate(int(self.head.label_map.class_ids[chosen]), float(probabilities[chosen]))
        result.uncertain = bool(probabilities.max() < uncertain_below)
        statuses = np.array([self.venom_status.get(int(c), UNKNOWN) for c in self.head.label_map.class_ids])
        result.explanation = self.explain(result, float(probabilities[statuses == VENOMOUS].sum()),
                                          float(probabilities[statuses == UNKNOWN].sum()), self.head.venom_weight)
        nearest = self.nearest(vectors, max(neighbours, 1))  # the closest one also answers "a snake this store knows?"
        result.neighbours = nearest[:neighbours]
        if not self.novelty:
            result.out_of_store = None
            result.notes.append("This store cannot tell whether the photo shows a snake it knows: it had too few validation "
                                "photos (20 or more are needed) to set the similarity threshold.")
        elif nearest:
            best, threshold = nearest[0].similarity, self.novelty["similarity_threshold"]
            if best < threshold:
                result.out_of_store = True
                result.explanation = (
                    f"This does not look like a snake in this store: its closest reference image has similarity {best:.3f}, "
                    f"below the {threshold:.3f} that {1 - self.novelty['target_false_rejection']:.0%} of validation snakes reach. "
                    + result.explanation
                )
        return result

    def candidate(self, class_id: int, probability: float) -> SpeciesCandidate:
        status = self.venom_status.get(class_id, UNKNOWN)
        return SpeciesCandidate(class_id, self.names.get(class_id, f"class {class_id}"), probability, status,
                                None if status == UNKNOWN else status == VENOMOUS)

    @staticmethod
    def explain(result: Identification, venomous_mass: float, unknown_mass: float = 0.0, venom_weight: float = 1.0) -> str:
        top, safe = result.species[0], result.venom_aware
        lead = ""
        if result.uncertain:
            candidates = ", ".join(s.binomial_name for s in result.species[:3])
            lead = f"Uncertain: no species reaches the confidence you asked for; the candidates are {candidates}. "
        mass = f"venomous species carry {venomous_mass:.0%} of the probability"
        if unknown_mass >= 0.005:
            mass += f", species of unknown venom status {unknown_mass:.0%} (treated as possibly venomous)"
        if safe is not None and safe.class_id != top.class_id:
            return lead + (
                f"The {mass}, so the venom-aware call is {safe.binomial_name} (mistaking a venomous snake for a harmless "
                f"one costs {5 * venom_weight:g}x a harmless mix-up)."
            )
        return lead + f"The venom-aware call agrees with the most likely species ({mass})."

    def nearest(self, vectors: np.ndarray, k: int) -> list[Neighbour]:
        """The k most similar stored images to any of the query photos (best similarity per image)."""
        found = search_images(self.index, self.catalogue, vectors, k)
        return [
            Neighbour(int(r.image_id), r.path, None if pd.isna(r.class_id) else int(r.class_id),
                      None if pd.isna(r.class_id) else r.binomial_name, float(r.similarity))
            for r in found.itertuples()
        ]
