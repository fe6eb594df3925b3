"""Exports of a store: a SnakeCLEF submission (`export_submission`: one class id per observation), and the
answers export (`export_answers`): one record per observation in the output schema identify uses
(snakeweb/schemas/output.schema.json, `answer`): the answer at its rank and its source, p(venomous), the range
flag, out-of-store, the raw top-k, the photos that could not be used, and provenance. Unlike a submission it
keeps every observation, including those none of whose photos could be read (they abstain, with reasons)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.aggregate import top_k
from snakeweb.answers import UNKNOWN_TAXON, Answers, Taxa, Thresholds, decide
from snakeweb.errors import SnakewebError, shell_word
from snakeweb.options import require_probabilities
from snakeweb.outputs import refuse_a_store_file, write_atomically
from snakeweb.provenance import decision_settings, file_id, provenance, store_facts
from snakeweb.store import Store

# `export` imports no torch, transformers, FAISS or umap: the head runs in NumPy (snakeweb.heads), and an exact
# index is read and searched in NumPy (snakeweb.vectors); only a large store's approximate index opens FAISS

ANSWER_SCHEMA_VERSION = "snakeweb.answer/1"
EXPORT_FORMATS = ("jsonl", "csv")
DECIDE_ROWS = 8192  # observations decided at a time (observation_answers)
# CSV keeps the flat fields; nested ones (raw top-k, failures, provenance) are JSON text in their cell
NESTED = ("raw_top_k", "failures", "provenance")


def observation_answers(store: Store, prior=None, range_mode: str = "prior", rank: str | None = None, top: int = 5,
                        aggregation: str = "mean-log", split: str | None = None, predicted=None) -> list[dict]:
    """One answer record per observation of the store (optionally of one split), in observation id order.

    `prior` (a CountryPrior, with the store's range records applied here) uses each observation's recorded
    country. Observations without any usable photo abstain and list their photos' reasons in `failures`.
    `predicted` is `heads.observation_probabilities(store, aggregation)` when the caller has it already.
    """
    require_probabilities(aggregation, "each answer and its p(venomous)")
    from snakeweb.ranges import LivePrior

    if predicted is None:
        from snakeweb.heads import observation_probabilities

        predicted = observation_probabilities(store, aggregation, split=split)
    observation_ids, probabilities, head = predicted
    observations = store.query("SELECT observation_id, country_code, split FROM observations ORDER BY observation_id")
    if split is not None:
        observations = observations[observations["split"] == split]
    species = store.species()
    taxa = Taxa.from_species(species, head.label_map.class_ids)
    thresholds = Thresholds.from_json(head.thresholds)
    live = LivePrior(store, prior) if prior is not None else None
    prior = live.current() if live else None
    row_of = {o: i for i, o in enumerate(observation_ids)}
    wanted = [o for o in observations["observation_id"] if o in row_of]
    rows_wanted = np.array([row_of[o] for o in wanted], dtype=np.int64)
    country_of = observations.set_index("observation_id")["country_code"]
    countries = [c if isinstance(c, str) else None for c in country_of.reindex(wanted)]
    cache: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    if prior is not None:
        for country in set(countries):
            usable = country is not None and prior.note(country, taxa.names) is None
            cache[country] = ((prior.weights(taxa.names, country), prior.records(taxa.names, country)) if usable
                              else (np.ones(len(taxa)), np.full(len(taxa), -1, np.int8)))
    out_of_store = _out_of_store(store, head, split=split)
    novel = np.array([bool(out_of_store.get(o)) for o in wanted], dtype=bool)
    # decided DECIDE_ROWS observations at a time: the range step and the roll-ups hold several float64 [rows, K]
    # arrays, 1.5 GB each for all 103k SnakeCLEF observations at once (predict peaked at 9.75 GB)
    parts, raw_indices, raw_probs = [], [], []
    for start in range(0, len(wanted), DECIDE_ROWS):
        chunk = slice(start, start + DECIDE_ROWS)
        probs = probabilities[rows_wanted[chunk]]
        weights = np.stack([cache[c][0] for c in countries[chunk]]) if cache else None
        records = np.stack([cache[c][1] for c in countries[chunk]]) if cache else None
        parts.append(decide(probs, taxa, thresholds, head.venom_weight, rank, range_mode, weights, records, out_of_store=novel[chunk]))
        indices, values = top_k(probs, top)
        raw_indices.append(indices)
        raw_probs.append(values)
    answers = _joined(parts)
    raw_indices = np.concatenate(raw_indices) if raw_indices else np.zeros((0, 0), int)
    raw_probs = np.concatenate(raw_probs) if raw_probs else np.zeros((0, 0))
    failures = _failures(store)
    decision = decision_settings(head, thresholds, rank, range_mode, getattr(prior, "source", None), live.version if live else 0,
                                 aggregation)
    shared = provenance(store_facts(store), head, file_id(store.head_path), decision)
    status = dict(zip(species["class_id"], species["venom_status"]))
    family = dict(zip(species["class_id"], species.get("family", pd.Series(UNKNOWN_TAXON, index=species.index))))
    genus = dict(zip(species["class_id"], species["genus"]))
    records_out: list[dict] = []
    position = {o: i for i, o in enumerate(wanted)}
    for observation_id, country in zip(observations["observation_id"], observations["country_code"]):
        i = position.get(observation_id)
        record = {"schema": ANSWER_SCHEMA_VERSION, "observation_id": str(observation_id),
                  "country": country if isinstance(country, str) else None, "failures": failures.get(observation_id, []),
                  "provenance": shared}
        if i is None:  # no photo of this observation could be used: it is kept, abstaining, with the reasons
            record.update(prediction="unknown snake", prediction_class_id=None, prediction_rank=None, prediction_score=None,
                          prediction_source="abstain", p_venomous=None, p_unknown_venom=None, venom_status="unknown",
                          out_of_range=None, out_of_store=None, raw_top_k=[])
            records_out.append(record)
            continue
        answered = answers.rank[i] or None
        class_ids = head.label_map.to_class_ids(raw_indices[i])
        record.update(
            prediction=answers.name[i], prediction_rank=answered,
            prediction_class_id=int(taxa.class_ids[answers.class_index[i]]) if answered == "species" else None,
            prediction_score=None if answered is None else round(float(answers.score[i]), 6),
            prediction_source=str(answers.source[i]), p_venomous=round(float(answers.p_venomous[i]), 6),
            p_unknown_venom=round(float(answers.p_unknown_venom[i]), 6), venom_status=str(answers.venom_status[i]),
            out_of_range=answers.out_of_range[i], out_of_store=out_of_store.get(observation_id),
            raw_top_k=[{"class_id": int(c), "binomial_name": taxa.names[k], "genus": _known(genus.get(int(c))),
                        "family": _known(family.get(int(c))),
                        "probability": round(float(p), 6), "venom_status": str(status.get(int(c), "unknown"))}
                       for c, k, p in zip(class_ids, raw_indices[i], raw_probs[i])],
        )
        records_out.append(record)
    return records_out


def _joined(parts: list[Answers]) -> Answers | None:
    """The per-row fields of answers decided in chunks, in order (the [n, K] probabilities are left out: the
    records do not carry them)."""
    if not parts:
        return None
    fields = {}
    for name in ("rank", "taxon", "score", "source", "venom_status", "p_venomous", "p_unknown_venom", "unconstrained_top", "class_index",
                 "venom_aware", "venom_aware_score"):
        fields[name] = np.concatenate([getattr(p, name) for p in parts])
    for name in ("name", "out_of_range"):
        fields[name] = [value for p in parts for value in getattr(p, name)]
    return Answers(**fields, probabilities=np.zeros((0, 0)))


def _known(family: object) -> str | None:
    return family if isinstance(family, str) and family != UNKNOWN_TAXON else None


NOT_EMBEDDED = "not embedded yet (ingested after the last embed): run `python -m pipelines build --store {store}` (or embed, then predict)"


def _failures(store: Store) -> dict[str, list[dict]]:
    """Per observation, its photos that could not be used, with their one-sentence reasons: those that could not be
    read (status error), and those ingested but not embedded yet (no vector: they are fine, the embed stage has
    not run on them; a photo read since is not an unreadable one)."""
    rows = store.query(
        "SELECT i.observation_id, i.image_id, i.path, i.error, i.status = 'error' AS failed FROM images i "
        "WHERE i.status = 'error' OR NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.image_id = i.image_id) ORDER BY i.image_id")
    out: dict[str, list[dict]] = {}
    for r in rows.itertuples():
        reason = (r.error or "unreadable") if r.failed else NOT_EMBEDDED.format(store=shell_word(store.root))
        out.setdefault(r.observation_id, []).append({"image_id": int(r.image_id), "name": r.path, "reason": reason})
    return out


def observations_without_vectors(store: Store, observation_ids: list[str]) -> dict[str, list[str]]:
    """Why each of `observation_ids` (observations left out of predictions: none of their photos has a vector) has no
    prediction: `not_embedded` (at least one photo is fine but not embedded yet: a build gives it a prediction),
    `unreadable` (every photo could not be read, status error) and `no_photos` (the store holds none of its photos).
    Each list keeps the order of `observation_ids`."""
    out: dict[str, list[str]] = {"not_embedded": [], "unreadable": [], "no_photos": []}
    if not observation_ids:
        return out
    counts = store.query(
        "SELECT o.observation_id, count(i.image_id) FILTER (i.status = 'error') AS errors, "
        "count(i.image_id) FILTER (i.status <> 'error') AS waiting FROM observations o "
        "LEFT JOIN images i USING (observation_id) GROUP BY o.observation_id").set_index("observation_id")
    errors, waiting = counts["errors"].to_dict(), counts["waiting"].to_dict()
    for o in observation_ids:
        out["not_embedded" if waiting.get(o) else "unreadable" if errors.get(o) else "no_photos"].append(o)
    return out


def _out_of_store(store: Store, head, chunk: int = 4096, split: str | None = None) -> dict[str, bool | None]:
    """Per observation (of one split's, with `split`): True when none of its photos is as close to a training
    photo of another observation as the novelty threshold chosen at train time (snakeweb.novelty); empty when
    the store has no threshold."""
    novelty = store.get_meta("novelty")
    if not novelty or not store.index_path.is_file():
        return {}
    from snakeweb.heads import split_condition
    from snakeweb.progress import tqdm
    from snakeweb.vectors import l2_normalise, open_index, restrict

    frame = store.query("SELECT image_id, observation_id, split FROM images WHERE status = 'ok' ORDER BY image_id")
    train_ids = frame.loc[frame["split"] == "train", "image_id"].to_numpy(np.int64)
    if not len(train_ids):
        return {}
    observation_of = dict(zip(frame["image_id"], frame["observation_id"]))
    index = restrict(open_index(store.index_path), train_ids)
    # only the photos asked about are searched: a split's 10% of a SnakeCLEF-sized store, not all 182k
    image_ids, vectors = store.embeddings(split_condition(split))
    best: dict[str, float] = {}
    for start in tqdm(range(0, len(image_ids), chunk), desc="out-of-store", unit="chunk"):
        ids = image_ids[start:start + chunk]
        sims, found = index.search(np.ascontiguousarray(l2_normalise(vectors[start:start + chunk])), 8)
        for image_id, row_sims, row_ids in zip(ids, sims, found):
            own = observation_of.get(int(image_id))
            others = [s for s, f in zip(row_sims, row_ids) if f >= 0 and observation_of.get(int(f)) != own]
            if others:
                best[own] = max(best.get(own, -np.inf), float(max(others)))
    threshold = novelty["similarity_threshold"]
    return {o: bool(s < threshold) for o, s in best.items()}


def export_answers(store: Store, out: Path, fmt: str | None = None, **options) -> list[dict]:
    """Write `observation_answers(store, **options)` to `out` atomically: JSON lines (.jsonl, the schema's
    records) or CSV (nested fields as JSON text). Raises SnakewebError for an unknown format, or an `out` that is
    a store's own file."""
    refuse_a_store_file(Path(out), "answers.jsonl")
    fmt = fmt or ("csv" if Path(out).suffix.lower() == ".csv" else "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise SnakewebError(f"Unknown answers format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)} (or name the file .jsonl / .csv).")
    records = observation_answers(store, **options)
    if fmt == "jsonl":
        write_atomically(Path(out), lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in records)))
    else:
        frame = pd.DataFrame([{k: json.dumps(v) if k in NESTED else v for k, v in r.items()} for r in records])
        if "prediction_class_id" in frame:  # a whole number (a column with empty cells was written 29.0)
            frame["prediction_class_id"] = frame["prediction_class_id"].astype("Int64")
        write_atomically(Path(out), lambda tmp: frame.to_csv(tmp, index=False))
    return records


ANSWERS_TABLE = """
CREATE OR REPLACE TABLE answers (
    observation_id VARCHAR PRIMARY KEY, prediction VARCHAR NOT NULL, prediction_class_id BIGINT, prediction_rank VARCHAR,
    prediction_score DOUBLE, prediction_source VARCHAR NOT NULL, p_venomous DOUBLE, p_unknown_venom DOUBLE,
    venom_status VARCHAR NOT NULL, out_of_range BOOLEAN, out_of_store BOOLEAN, record VARCHAR NOT NULL
)
"""
FLAT = ("observation_id", "prediction", "prediction_class_id", "prediction_rank", "prediction_score", "prediction_source",
        "p_venomous", "p_unknown_venom", "venom_status", "out_of_range", "out_of_store")


def store_answers(store: Store, predicted, aggregation: str = "mean-log") -> int:
    """The predict stage's answers (recorded country table and range records in prior mode, each observation's
    country, thresholds of the head) in the store's `answers` table: what the Review page shows and what a
    review records as the answer it was made on. Returns the number of observations."""
    from snakeweb.decisions import CountryPrior

    table = store.get_meta("country_table")
    try:
        prior = CountryPrior.from_csv(table, notes=False) if table else None
    except SnakewebError as exc:  # the recorded table has moved: answers without the range step, and say so
        print(f"predict: answers without the country step: {exc}")
        prior = None
    records = observation_answers(store, prior=prior, aggregation=aggregation, predicted=predicted)
    frame = pd.DataFrame([{**{k: r[k] for k in FLAT}, "record": json.dumps(r)} for r in records], columns=[*FLAT, "record"])
    with store.transaction() as con:
        con.execute(ANSWERS_TABLE)
        con.register("new_answers", frame)
        con.execute(f"INSERT INTO answers SELECT {', '.join(FLAT)}, record FROM new_answers")
    return len(frame)


def export_submission(
    store: Store, out, decision: str = "argmax", prior=None, aggregation: str = "mean-log", split: str | None = None,
) -> pd.DataFrame:
    """A SnakeCLEF submission (observation_id, class_id; one row per observation, integer ids), written
    atomically. `prior` is a CountryPrior applied with each observation's country code. Raises SnakewebError, before
    any work, for an `out` that is a store's own file."""
    if decision != "argmax" or prior is not None:
        require_probabilities(aggregation, "the venom-aware decision" if decision != "argmax" else "the country prior")
    if out is not None:  # (None: the rows only, as the Metrics page asks for them)
        refuse_a_store_file(Path(out), "submission.csv")
    from snakeweb.decisions import decide as decide_class  # the SnakeCLEF decision rules (argmax / cost), not answers.decide
    from snakeweb.heads import observation_probabilities
    from snakeweb.species import possibly_venomous_mask

    observation_ids, probabilities, head = observation_probabilities(store, aggregation)
    observations = store.query("SELECT observation_id, country_code, split FROM observations").set_index("observation_id")
    species = store.species().set_index("class_id")
    class_ids = head.label_map.class_ids
    if prior is not None:
        from snakeweb.ranges import effective_prior

        prior = effective_prior(store, prior)  # the review team's range records in the store count as much as the table
        names = [species["binomial_name"].get(c, f"class {c}") for c in class_ids]
        countries = [observations["country_code"].get(o) for o in observation_ids]
        probabilities = prior.apply(probabilities, names, [c if isinstance(c, str) else None for c in countries])
    venomous = possibly_venomous_mask(species, class_ids)
    chosen = head.label_map.to_class_ids(decide_class(probabilities, venomous, decision, head.venom_weight))
    submission = pd.DataFrame({"observation_id": observation_ids, "class_id": chosen.astype(np.int64)})
    if split is not None:
        submission = submission[submission["observation_id"].map(observations["split"]) == split]
    if out is not None:
        write_atomically(Path(out), lambda tmp: submission.to_csv(tmp, index=False))
    return submission


def left_out_notes(store: Store, observation_ids: list[str], what: str = "are not in the submission") -> list[str]:
    """One sentence per kind of observation in `observation_ids` (those with no prediction), saying why and what to do:
    photos not embedded yet (fine photos: a build embeds them) are told apart from photos that could not be read."""
    kinds = observations_without_vectors(store, observation_ids)
    notes = []
    if kinds["not_embedded"]:
        notes.append(f"{len(kinds['not_embedded'])} observation(s) {what} because their photos are not embedded yet (ingested after "
                     f"the last embed; e.g. {_examples(store, kinds['not_embedded'])}): run `python -m pipelines build --store "
                     f"{shell_word(store.root)}` (or embed, then predict) and export again.")
    if kinds["unreadable"]:
        notes.append(f"{len(kinds['unreadable'])} observation(s) {what} because none of their photos could be read (e.g. "
                     f"{', '.join(kinds['unreadable'][:3])}); each photo's reason is in `export --answers` (failures) and on the Build page.")
    if kinds["no_photos"]:
        notes.append(f"{len(kinds['no_photos'])} observation(s) {what} because the store holds none of their photos (e.g. "
                     f"{', '.join(kinds['no_photos'][:3])}).")
    return notes


def _examples(store: Store, observation_ids: list[str]) -> str:
    """The paths of the first three observations' first not-embedded photos (an observation id of a photo folder is
    a path too; a SnakeCLEF one is not, so the photo says more)."""
    wanted = observation_ids[:3]
    rows = store.query("SELECT observation_id, min(path) AS path FROM images i WHERE status <> 'error' AND NOT EXISTS "
                       "(SELECT 1 FROM embeddings e WHERE e.image_id = i.image_id) GROUP BY observation_id")
    path_of = dict(zip(rows["observation_id"], rows["path"]))
    return ", ".join(str(path_of.get(o, o)) for o in wanted)
