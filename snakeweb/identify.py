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
from snakeweb.species import venomous_mask
from snakeweb.stages import load_head, store_backbone
from snakeweb.store import Store


@dataclass
class SpeciesCandidate:
    class_id: int
    binomial_name: str
    probability: float
    venomous: bool


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
    rejected: dict[str, str] = field(default_factory=dict)  # input -> why it could not be used
    country: str | None = None  # ISO code of the prior applied, if any
    uncertain: bool = False  # top probability below the user's threshold: candidates, not an answer
    out_of_store: bool = False  # farther from every reference than validation snakes ever are
    venom_aware: SpeciesCandidate | None = None  # the class minimising expected Track2 cost
    explanation: str = ""

    def to_json(self) -> dict:
        return asdict(self)


class Identifier:
    """Loads a store's backbone, head and index once; identifies any number of observations."""

    def __init__(self, store: Store, device: str | None = None, country_table: str | Path | None = None):
        self.store = store.require()
        table = country_table or store.get_meta("country_table")
        self.prior = CountryPrior.from_csv(table) if table else None
        self.backbone = store_backbone(store, device)
        self.feature_kind = store.get_meta("feature_kind")
        self.head = load_head(store)
        self.index = load_index(store.index_path)
        self.species = store.species().set_index("class_id")
        self.names = self.species["binomial_name"].to_dict()
        self.venomous = self.species["venomous"].astype(bool).to_dict()
        self.catalogue = image_catalogue(store)
        self.novelty = store.get_meta("novelty")

    def embed(self, sources: list[tuple[str, str | Path | bytes]]) -> tuple[list[str], np.ndarray, dict[str, str]]:
        names, vectors, rejected = [], [], {}
        for batch in embed_images(self.backbone, sources, self.feature_kind, batch_size=16):
            for name, vector, error in zip(batch.keys, batch.vectors, batch.errors):
                if error:
                    rejected[name] = error
                else:
                    names.append(name)
                    vectors.append(vector)
        return names, (np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)), rejected

    def identify(
        self, sources: list[tuple[str, str | Path | bytes]], top: int = 5, neighbours: int = 12,
        aggregation: str = "mean-log", country: str | None = None, uncertain_below: float = 0.0,
    ) -> Identification:
        """`sources` are (name, path or bytes) photos of one animal: they form one observation."""
        names, vectors, rejected = self.embed(sources)
        result = Identification(inputs=[n for n, _ in sources], rejected=rejected)
        if not names:
            raise SnakewebError("None of the photos could be read: " + "; ".join(f"{k}: {v}" for k, v in rejected.items()))
        probabilities = combine(self.head.predict_log_proba(vectors, self.index), aggregation)
        if country:
            if self.prior is None:
                raise SnakewebError("A country needs the species x country table: pass --country-table Species_Relevance.csv.")
            result.country = CountryPrior.country_code(country)
            class_names = [self.names.get(int(c), "") for c in self.head.label_map.class_ids]
            probabilities = self.prior.apply(probabilities[None, :], class_names, [result.country])[0]
        indices, probs = top_k(probabilities[None, :], top)
        result.species = [self.candidate(int(c), float(p)) for c, p in zip(self.head.label_map.to_class_ids(indices[0]), probs[0])]
        venomous = venomous_mask(self.species, self.head.label_map.class_ids)
        chosen = int(cost_aware_choice(probabilities[None, :], venomous, self.head.venom_weight)[0])
        result.venom_aware = self.candidate(int(self.head.label_map.class_ids[chosen]), float(probabilities[chosen]))
        result.uncertain = bool(probabilities.max() < uncertain_below)
        result.explanation = self.explain(result, float(probabilities[venomous].sum()) if venomous.any() else 0.0,
                                          self.head.venom_weight)
        result.neighbours = self.nearest(vectors, neighbours)
        if self.novelty and result.neighbours:
            best, threshold = result.neighbours[0].similarity, self.novelty["similarity_threshold"]
            if best < threshold:
                result.out_of_store = True
                result.explanation = (
                    f"This does not look like a snake in this store: its closest reference image has similarity {best:.3f}, "
                    f"below the {threshold:.3f} that {1 - self.novelty['target_false_rejection']:.0%} of validation snakes reach. "
                    + result.explanation
                )
        return result

    def candidate(self, class_id: int, probability: float) -> SpeciesCandidate:
        return SpeciesCandidate(class_id, self.names.get(class_id, f"class {class_id}"), probability, bool(self.venomous.get(class_id, False)))

    @staticmethod
    def explain(result: Identification, venomous_mass: float, venom_weight: float = 1.0) -> str:
        top, safe = result.species[0], result.venom_aware
        lead = ""
        if result.uncertain:
            candidates = ", ".join(s.binomial_name for s in result.species[:3])
            lead = f"Uncertain: no species reaches the confidence you asked for; the candidates are {candidates}. "
        if safe is not None and safe.class_id != top.class_id:
            return lead + (
                f"The venomous species carry {venomous_mass:.0%} of the probability, so the venom-aware call is "
                f"{safe.binomial_name} (mistaking a venomous snake for a harmless one costs {5 * venom_weight:g}x a harmless mix-up)."
            )
        return lead + (
            f"The venom-aware call agrees with the most likely species ({venomous_mass:.0%} of the probability is on venomous species)."
        )

    def nearest(self, vectors: np.ndarray, k: int) -> list[Neighbour]:
        """The k most similar stored images to any of the query photos (best similarity per image)."""
        found = search_images(self.index, self.catalogue, vectors, k)
        return [
            Neighbour(int(r.image_id), r.path, None if pd.isna(r.class_id) else int(r.class_id),
                      None if pd.isna(r.class_id) else r.binomial_name, float(r.similarity))
            for r in found.itertuples()
        ]
