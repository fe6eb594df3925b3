"""Identify new photos of one animal against a store: species with probabilities and venom flags, and the
nearest reference images. The command line and the dashboard both call `Identifier.identify`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.aggregate import combine, top_k
from snakeweb.answers import RANGE_MODES, RANKS, UNKNOWN_TAXON, Taxa, Thresholds, answer_venom_weight, decide
from snakeweb.countries import country_name
from snakeweb.decisions import CountryPrior
from snakeweb.embed import embed_images
from snakeweb.errors import SnakewebError
from snakeweb.identification import (
    DANGER_AT,
    NAME_POSSIBLY_VENOMOUS_FROM,
    Identification,
    InputFailure,
    Neighbour,
    SpeciesCandidate,
    answer_sentence,
    explanation,
    venom_headline,
    venom_level,
)
from snakeweb.index import load_index
from snakeweb.options import require_probabilities
from snakeweb.provenance import decision_settings, file_id, provenance, store_facts
from snakeweb.ranges import LivePrior
from snakeweb.search import image_catalogue, search_images
from snakeweb.species import HARMLESS, UNKNOWN, VENOMOUS
from snakeweb.stages import load_head, store_backbone
from snakeweb.store import Store

# a photo whose short side is below this shows no scale or marking (HackerEarth-35's real photos go down to 31 px)
TINY_PHOTO_PX = 16


class NoUsablePhotos(SnakewebError):
    """None of an observation's photos could be used; `failures` says why for each."""

    def __init__(self, message: str, failures: list):
        super().__init__(message)
        self.failures = failures


# two photos each naming another species at this probability or more are said to disagree (Identifier.disagreement)
DISAGREE_AT = 0.5


class Identifier:
    """Loads a store's backbone, head and index once; identifies any number of observations."""

    def __init__(self, store: Store, device: str | None = None, country_table: str | Path | None = None):
        self.store = store.require()
        table = country_table or store.get_meta("country_table")
        self.base_prior, self.prior_error = None, None
        try:
            self.base_prior = CountryPrior.from_csv(table, notes=bool(country_table)) if table else None
        except SnakewebError as exc:
            if country_table:  # the table the user passed: say so now
                raise
            # the table recorded at ingest has moved or changed: identify without a country still works
            self.prior_error = f"{exc} (the species x country table recorded when the store was built); pass --country-table."
        self.country_table = str(table) if table and not self.prior_error else None
        self.ranges = LivePrior(store, self.base_prior)
        self.prior = self.base_prior
        self.backbone = store_backbone(store, device)
        self.backbone.set_purpose("identify")  # OpenVINO compiles for the latency of one photo, not throughput
        self.feature_kind = store.get_meta("feature_kind")
        self.head = load_head(store)
        self.head_id = file_id(store.head_path)
        self.facts = store_facts(store)  # read now: identify keeps working while a rebuild holds the file
        self.index = load_index(store.index_path)
        self.species = store.species().set_index("class_id")
        self.names = self.species["binomial_name"].to_dict()
        self.venom_status = self.species["venom_status"].to_dict()
        self.taxa = Taxa.from_species(self.species, self.head.label_map.class_ids)
        self.thresholds = Thresholds.from_json(self.head.thresholds)
        self.venom_weight = answer_venom_weight(self.thresholds, self.head.venom_weight)
        if self.base_prior is not None and country_table:
            self.base_prior.require_species(self.species["binomial_name"].tolist())
        self.catalogue = image_catalogue(store)
        self.novelty = store.get_meta("novelty")
        self.refresh_prior()

    def refresh_prior(self) -> CountryPrior | None:
        """The shipped species x country table with the team's range records applied (snakeweb.ranges): a record
        saved on the Review page counts at the next identification."""
        self.prior = self.ranges.current()
        return self.prior

    def embed(self, sources: list[tuple[str, str | Path | bytes]]) -> tuple[list[int], np.ndarray, list[InputFailure], list[str]]:
        """(positions of the usable inputs, their vectors [n, d], failures, notes on photos that were used: an
        animation or multi-page file of which only the first frame was, a photo under TINY_PHOTO_PX on a side).
        Inputs are keyed by position, so three uploads all named image.jpg each get their own vector or failure."""
        positions, vectors, failures, notes = [], [], [], []
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
                    if min(decoded.width, decoded.height) < TINY_PHOTO_PX:
                        notes.append(f"Photo {position + 1} ({sources[position][0]}) is only {decoded.width} x {decoded.height} "
                                     "pixels, too small to show a snake's markings: the answer from it says little.")
                    if decoded.frames > 1:
                        notes.append(f"Photo {position + 1} ({sources[position][0]}) has {decoded.frames} frames (an animation or a "
                                     "multi-page file); only the first was used: give the frame that shows the snake as its own photo.")
        return positions, (np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)), failures, notes

    def identify(
        self, sources: list[tuple[str, str | Path | bytes]], top: int = 5, neighbours: int = 12,
        aggregation: str = "mean-log", country: str | None = None, uncertain_below: float = 0.0,
        rank: str | None = None, range_mode: str = "prior",
    ) -> Identification:
        """`sources` are (name, path or bytes) photos of one animal: they form one observation.

        `top` >= 1 species and `neighbours` >= 0 reference images are returned; `country` is an ISO code or
        name (a CountryError for anything that is not exactly one country); `rank` fixes the answer's rank
        (species / genus / family; default: the thresholds chosen on validation); `range_mode` is `prior`
        (down-weight species not recorded in the country) or `filter` (remove them). Raises SnakewebError
        when no photo can be read.
        """
        if top < 1 or neighbours < 0 or not 0.0 <= uncertain_below <= 1.0:
            raise SnakewebError("Ask for at least 1 species, 0 or more reference images, and an uncertainty threshold in 0..1.")
        if range_mode not in RANGE_MODES or (rank is not None and rank not in RANKS):
            raise SnakewebError(f"Use a range mode of {' or '.join(RANGE_MODES)} and a rank of {', '.join(RANKS)}.")
        require_probabilities(aggregation, "the answer and p(venomous)")
        code, prior = None, None
        if country:
            if self.prior_error:
                raise SnakewebError(self.prior_error)
            prior = self.refresh_prior()
            if prior is None:
                raise SnakewebError("A country needs the species x country table: pass --country-table Species_Relevance.csv, "
                                    "or add range records on the Review page.")
            code = CountryPrior.country_code(country)
        positions, vectors, failures, frame_notes = self.embed(sources)
        result = Identification(inputs=[str(n) for n, _ in sources], failures=failures, country=code, range_mode=range_mode)
        result.notes.extend(frame_notes)
        if not positions:
            raise NoUsablePhotos("None of the photos could be read: " + "; ".join(f"{f.name}: {f.reason}" for f in failures), failures)
        per_photo = self.head.predict_log_proba(vectors, self.index)
        raw = combine(per_photo, aggregation)[None, :]
        result.notes.extend(self.disagreement(per_photo, [sources[p][0] for p in positions], raw[0]))
        weights = records = None
        applied_mode = range_mode
        if code:
            # the records flag an out-of-range top species even where the prior cannot be applied (a rattlesnake in
            # Australia, whose column records none of this store's species, is still recorded as not present there)
            records = prior.records(self.taxa.names, code)[None, :]
            note = prior.note(code, self.taxa.names)
            if note:
                result.notes.append(note)
                applied_mode = "prior"  # flag only: no weights, nothing filtered
            else:
                weights = prior.weights(self.taxa.names, code)[None, :]
                result.country_prior_applied = True
        if self.thresholds is None and rank is None:
            result.notes.append("This head has no rank thresholds chosen on validation (it was trained before roll-up, or "
                                "validation was too small), so the answer is never rolled up to genus or family: it names the most "
                                "likely species unless the venom rule or the out-of-store check withholds it.")
        nearest = self.nearest(vectors, max(neighbours, 1))  # the closest one also answers "a snake this store knows?"
        result.neighbours = nearest[:neighbours]
        unlike = ""
        if not self.novelty:
            result.out_of_store = None
            result.notes.append("This store cannot tell whether the photo shows a snake it knows: it had too few validation "
                                "photos (20 or more are needed) to set the similarity threshold.")
        elif nearest:
            best, threshold = nearest[0].similarity, self.novelty["similarity_threshold"]
            if best < threshold:
                result.out_of_store = True
                unlike = (f"This does not look like a snake in this store: its closest reference image has similarity {best:.3f}, "
                          f"below the {threshold:.3f} that {1 - self.novelty['target_false_rejection']:.0%} of validation snakes "
                          "reach, so no taxon is named. ")
        answer = decide(raw, self.taxa, self.thresholds, self.head.venom_weight, rank, applied_mode, weights, records,
                        out_of_store=np.array([bool(result.out_of_store)]))
        result.uncertain = bool(answer.probabilities[0].max() < uncertain_below)
        if result.uncertain and answer.rank[0]:  # candidates, not an answer: the user asked for no name below this
            answer = decide(raw, self.taxa, self.thresholds, self.head.venom_weight, rank, applied_mode, weights, records,
                            out_of_store=np.array([True]))
        probabilities = answer.probabilities[0]
        self._fill_answer(result, answer)
        result.raw_top_k = self.top_candidates(raw[0], top)
        result.species = self.top_candidates(probabilities, top)
        result.possibly_venomous = self.possibly_venomous(np.maximum(raw[0], probabilities))
        result.unconstrained_top = self.candidate(int(self.taxa.class_ids[answer.unconstrained_top[0]]), float(raw[0].max()))
        chosen = int(answer.venom_aware[0])  # the decision's own call (it sees past the range step, as the venom rule does)
        result.venom_aware = self.candidate(int(self.taxa.class_ids[chosen]), float(answer.venom_aware_score[0]))
        result.explanation = unlike + explanation(result, result.p_venomous, result.p_unknown_venom, self.venom_weight)
        result.provenance = self.provenance(rank, range_mode, aggregation, uncertain_below)
        result.venom_level = venom_level(result)
        return result

    def disagreement(self, log_probs: np.ndarray, names: list[str], combined: np.ndarray | None = None) -> list[str]:
        """Notes when photos given as one animal disagree (log-probabilities [n, K], one name per row; `combined`
        the observation's probabilities [K]): two or more photos each naming another species at DISAGREE_AT or more,
        or a photo possibly venomous at DANGER_AT or more on its own whose share the others brought below it (a
        cottonmouth photo, 64% alone, read 38% beside a green snake's photo, with no word)."""
        probs = np.exp(log_probs)
        again = " They were combined as photos of one animal; if they are not, identify them one at a time (--each, or one upload at a time)."
        notes = []
        tops, scores = probs.argmax(axis=1), probs.max(axis=1)
        confident = [(i, int(t), float(s)) for i, (t, s) in enumerate(zip(tops, scores)) if s >= DISAGREE_AT]
        if len({t for _, t, _ in confident}) >= 2:
            said = ", ".join(f"photo {i + 1} ({names[i]}) looks most like {self.taxa.names[t]} ({s:.0%})" for i, t, s in confident[:3])
            notes.append(f"The photos disagree: {said}.{again}")
        if combined is not None and len(probs) > 1:
            possibly = self.taxa.possibly_venomous()
            alone, together = probs[:, possibly].sum(axis=1), float(np.asarray(combined)[possibly].sum())
            diluted = [(i, float(p)) for i, p in enumerate(alone) if p >= DANGER_AT > together]
            if diluted:
                said = ", ".join(f"photo {i + 1} ({names[i]}) is {p:.0%}" for i, p in diluted[:3])
                notes.append(f"On its own {said} possibly venomous, but {together:.0%} with the other photos.{again}")
        return notes

    def _fill_answer(self, result: Identification, answer) -> None:
        rank = answer.rank[0] or None
        result.prediction, result.prediction_rank, result.prediction_source = answer.name[0], rank, str(answer.source[0])
        result.prediction_score = None if rank is None else float(answer.score[0])
        result.prediction_class_id = int(self.taxa.class_ids[answer.class_index[0]]) if rank == "species" else None
        result.prediction_family = self._family(rank, answer.name[0], result.prediction_class_id)
        result.p_venomous, result.p_unknown_venom = float(answer.p_venomous[0]), float(answer.p_unknown_venom[0])
        result.venom_status, result.out_of_range = str(answer.venom_status[0]), answer.out_of_range[0]
        result.headline = venom_headline(result.p_venomous, result.p_unknown_venom, bool(result.out_of_store))
        top = self.names.get(int(self.taxa.class_ids[answer.unconstrained_top[0]]), "")
        result.answer_text = answer_sentence(result, top, country_name(result.country) if result.country else None)

    def _family(self, rank: str | None, name: str, class_id: int | None) -> str | None:
        """The answered taxon's family, when known (a species by its class id: names are for people)."""
        if rank == "family":
            return name
        if rank == "genus":
            return self.taxa.family_of_genus.get(name)
        if rank == "species":
            return self.candidate(class_id, 0.0).family
        return None

    def top_candidates(self, probabilities: np.ndarray, top: int) -> list[SpeciesCandidate]:
        indices, probs = top_k(probabilities[None, :], top)
        return [self.candidate(int(c), float(p)) for c, p in zip(self.head.label_map.to_class_ids(indices[0]), probs[0])]

    def possibly_venomous(self, probabilities: np.ndarray) -> list[SpeciesCandidate]:
        """[n_classes] probabilities in head order -> the venomous and unknown-status species at or above
        NAME_POSSIBLY_VENOMOUS_FROM, most likely first (never cut at top-k)."""
        columns = np.flatnonzero(probabilities >= NAME_POSSIBLY_VENOMOUS_FROM)
        columns = columns[np.argsort(-probabilities[columns], kind="stable")]
        found = [self.candidate(int(c), float(probabilities[k]))
                 for c, k in zip(self.head.label_map.to_class_ids(columns), columns)]
        return [s for s in found if s.venom_status != HARMLESS]

    def provenance(self, rank: str | None, range_mode: str, aggregation: str, uncertain_below: float) -> dict:
        """What made this answer: enough to reproduce it or to tell two answers' origins apart."""
        decision = decision_settings(self.head, self.thresholds, rank, range_mode, self.country_table, self.ranges.version,
                                     aggregation, uncertain_below=uncertain_below)
        # the engine that embedded the photos here (OpenVINO or the torch fallback): the vectors agree to cosine 0.9999
        return provenance(self.facts, self.head, self.head_id, decision) | {"engine": self.backbone.details.get("engine")}

    def candidate(self, class_id: int, probability: float) -> SpeciesCandidate:
        status = self.venom_status.get(class_id, UNKNOWN)
        genus = self.species["genus"].get(class_id) if "genus" in self.species.columns else None
        family = self.species["family"].get(class_id) if "family" in self.species.columns else None
        return SpeciesCandidate(class_id, self.names.get(class_id, f"class {class_id}"), probability, status,
                                None if status == UNKNOWN else status == VENOMOUS,
                                genus if isinstance(genus, str) else None,
                                family if isinstance(family, str) and family != UNKNOWN_TAXON else None)

    def nearest(self, vectors: np.ndarray, k: int) -> list[Neighbour]:
        """The k most similar stored images to any of the query photos (best similarity per image)."""
        found = search_images(self.index, self.catalogue, vectors, k)
        return [
            Neighbour(int(r.image_id), r.path, None if pd.isna(r.class_id) else int(r.class_id),
                      None if pd.isna(r.class_id) else r.binomial_name, float(r.similarity))
            for r in found.itertuples()
        ]
