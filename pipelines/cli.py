"""`python -m pipelines STAGE ...`: argument parsing and printing only; the work is in `snakeweb`.

Exit codes: 0 done; 1 a check failed (`check`) or nothing could be identified for a reason other than the
input; 2 bad input (an argument, a table or a photo snakeweb cannot use: the message says which and why);
130 interrupted. With `--json`, stdout carries only JSON: every library print and log goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Only light modules at the top (standard library and snakeweb modules that import no NumPy, pandas or torch):
# `--help`, argument errors and `score` must not wait for torch, transformers, faiss or umap. Every handler
# imports the library modules it uses (tests/test_cli_imports.py checks this in a fresh process).
from snakeweb.errors import SnakewebError
from snakeweb.models import FEATURE_KINDS, TTA_MODES
from snakeweb.options import AGGREGATIONS, DECISIONS, HEAD_KINDS, RANGE_MODES, RANKS, SPLITS, TrainConfig
from snakeweb.train_views import DEFAULT_TRAIN_VIEWS, TRAIN_VIEWS

if TYPE_CHECKING:
    from snakeweb.store import Store

_results = None  # where JSON results go while library output is sent to stderr (see _json_only_on_stdout)


def _emit(text: str) -> None:
    """Print a result (JSON) on the real stdout, even while stdout is redirected to stderr."""
    stream = _results or sys.stdout
    stream.write(text + "\n")
    stream.flush()


@contextlib.contextmanager
def _json_only_on_stdout() -> Iterator[None]:
    """Send everything printed to stdout (Python prints of libraries, and C code writing to file descriptor 1)
    to stderr, keeping the real stdout for `_emit`: `--json` output must parse as JSON."""
    global _results
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = None
    if fd == 1:  # a real process: move file descriptor 1 too
        saved = os.dup(1)
        os.dup2(2, 1)
        _results = os.fdopen(saved, "w", buffering=1, encoding="utf-8")
    else:  # in-process callers (tests) that replaced sys.stdout
        _results = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        _results.flush()
        if fd == 1:
            os.dup2(_results.fileno(), 1)
            _results.close()
        _results = None


def _whole(minimum: int):
    """An argparse type: a whole number >= minimum (a usage sentence otherwise, never a traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give {minimum} or more")
        return value
    parse.__name__ = f"whole number >= {minimum}"
    return parse


def _number(low: float, high: float = float("inf"), low_open: bool = False):
    """An argparse type: a finite number in [low, high] (or (low, high] with `low_open`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            bounds = f"{'above' if low_open else 'at least'} {low:g}" + (f" and at most {high:g}" if high != float("inf") else "")
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number {bounds}")
        return value
    parse.__name__ = "number"
    return parse


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, type=Path, help="store directory (created by ingest/build)")


def _ingest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, help="folder with one subfolder of photos per species")
    parser.add_argument("--metadata", type=Path, nargs="+", default=[], help="SnakeCLEF metadata CSV(s)")
    parser.add_argument("--image-root", type=Path, help="folder that the metadata's image_path is relative to")
    parser.add_argument("--country-table", type=Path, help="Species_Relevance.csv, recorded for identify --country")
    parser.add_argument("--species", type=Path, nargs="+", default=[],
                        help="species table CSV(s): class_id, binomial_name, venomous/MIVS (e.g. class_list.csv)")
    parser.add_argument("--taxonomy", type=Path, help="taxonomy CSV (family, genus, species; e.g. serpentes.csv) giving every "
                        "class its family (default: $SNAKEWEB_TAXONOMY)")


def _embed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="auto, a registry name (dinov2-small|base|large|giant, dinov2-small-offline, "
                                        "efficientnet-lite0|1|2-offline), concat:A+B (joined features) or a folder")
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: flip averages each photo with its mirror image")
    parser.add_argument("--views", nargs="+", choices=("none", *TRAIN_VIEWS),
                        help="augmented views of training photos embedded as extra rows for the head "
                             f"(default: what the store recorded, else {' '.join(DEFAULT_TRAIN_VIEWS) or 'none'}; none for no views)")
    parser.add_argument("--features", choices=FEATURE_KINDS,
                        help="ViTs: cls (the paper) or cls+mean (DINOv2 linear eval); CNNs: pool (default: the model's first)")
    parser.add_argument("--batch-size", type=_whole(1), help="photos per model call (default: 32 on the CPU, 256 on a GPU)")
    parser.add_argument("--reembed", action="store_true", help="replace embeddings made by another model or feature kind")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="ray: decode and embed on a Ray Data actor pool (RAY_ADDRESS for a cluster; requirements-ray.txt)")


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--head", choices=HEAD_KINDS, default=TrainConfig.kind)
    parser.add_argument("--balanced", action="store_true", help="class-balanced loss weights")
    parser.add_argument("--epochs", type=_whole(1), default=TrainConfig.max_epochs)
    parser.add_argument("--lr", type=_number(0.0, 10.0, low_open=True), nargs="+", default=list(TrainConfig.learning_rates),
                        help="learning rates trained together; the best on validation is kept")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--include-reviews", action="store_true", help="train on reviewers' corrected labels too")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="all stages: ingest, embed, index, train, predict, project")
    _store_arg(build), _ingest_args(build), _embed_args(build), _train_args(build)
    build.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log")
    build.add_argument("--skip-project", action="store_true", help="leave out the UMAP map")

    ingest = sub.add_parser("ingest", help="list photos into the store")
    _store_arg(ingest), _ingest_args(ingest)
    embed = sub.add_parser("embed", help="embed pending images")
    _store_arg(embed), _embed_args(embed)
    index = sub.add_parser("index", help="build the FAISS index")
    _store_arg(index)
    index.add_argument("--force", action="store_true")
    train = sub.add_parser("train", help="train the head")
    _store_arg(train), _train_args(train)
    predict = sub.add_parser("predict", help="store per-observation predictions")
    _store_arg(predict)
    predict.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log")
    project = sub.add_parser("project", help="UMAP map of the embeddings")
    _store_arg(project)
    project.add_argument("--force", action="store_true")

    identify = sub.add_parser("identify", help="identify photos of one animal")
    _store_arg(identify)
    identify.add_argument("images", nargs="+", type=Path)
    identify.add_argument("--country", help="ISO country code or name where the photo was taken")
    identify.add_argument("--top-k", type=_whole(1), default=5, help="species to list (1 or more)")
    identify.add_argument("--neighbours", type=_whole(0), default=12, help="nearest reference images to list (0 for none)")
    identify.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log")
    identify.add_argument("--country-table", type=Path, help="species x country CSV (default: the one recorded by build)")
    identify.add_argument("--uncertain-below", type=_number(0.0, 1.0), default=0.0,
                          help="say 'uncertain' and list candidates when the top probability is below this (e.g. 0.5)")
    identify.add_argument("--rank", choices=RANKS, help="answer at this rank (default: the finest rank whose probability "
                          "reaches the threshold chosen on validation)")
    identify.add_argument("--range-mode", choices=RANGE_MODES, default="prior",
                          help="with --country: prior down-weights species not recorded there, filter removes them")
    identify.add_argument("--each", action="store_true", help="every image is its own observation")
    identify.add_argument("--json", action="store_true", help="print JSON (one object per observation)")
    check = sub.add_parser("check", help="verify a store's integrity: one verdict per check")
    _store_arg(check)

    score = sub.add_parser("score", help="official SnakeCLEF metrics of a submission")
    score.add_argument("--metadata", required=True, type=Path, help="ground truth: metadata CSV with observation_id, class_id")
    score.add_argument("--predictions", required=True, type=Path, help="submission CSV: observation_id, class_id")
    score.add_argument("--venomous", required=True, type=Path, help="venomous list CSV: class_id, MIVS")
    score.add_argument("--json", action="store_true", help="one JSON object with the official key names")

    export = sub.add_parser("export", help="write a SnakeCLEF submission CSV, or every observation's answer (--answers)")
    _store_arg(export)
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--answers", action="store_true",
                        help="every observation's answer in the output schema (JSON lines, or CSV when --out ends .csv)")
    export.add_argument("--rank", choices=RANKS, help="--answers: answer at this rank (default: thresholds chosen on validation)")
    export.add_argument("--range-mode", choices=RANGE_MODES, default="prior", help="--answers with --prior country: prior or filter")
    export.add_argument("--split", choices=SPLITS, help="--answers: only this split")
    export.add_argument("--decision", choices=DECISIONS, default="argmax",
                        help="argmax, or cost: minimise expected Track2 cost (venomous called harmless costs 5)")
    export.add_argument("--prior", choices=("country", "none"),
                        help="the country prior (default: none for a submission; for --answers the store's recorded table, as identify)")
    export.add_argument("--country-table", type=Path, help="species x country CSV (Species_Relevance.csv) for --prior country")
    export.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log")

    evaluate = sub.add_parser("evaluate", help="official metrics of the store's head on a held-out split")
    _store_arg(evaluate)
    evaluate.add_argument("--split", default="test", choices=("test", "val", "train"), help="test (default), val or train")
    evaluate.add_argument("--country-table", type=Path,
                          help="Species_Relevance.csv: also report with the country prior (default: the table recorded at ingest, if any)")
    evaluate.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log")
    evaluate.add_argument("--json", action="store_true")

    import_reviews = sub.add_parser("import-reviews", help="add reviews from a review export (the Review page's CSV)")
    _store_arg(import_reviews)
    import_reviews.add_argument("csv", type=Path, help="reviews CSV: observation_id, reviewer, new_class_id[, reviewed_at, note]")

    import_embeddings = sub.add_parser("import-embeddings", help="add vectors computed elsewhere (Parquet) to a store, as ingest + embed would")
    import_embeddings.add_argument("--store", required=True, type=Path, help="store directory (created when absent)")
    import_embeddings.add_argument("--parquet", required=True, nargs="+", type=Path,
                                   help="Parquet file(s): path and/or image_id, observation_id, [class_id, split, country,] vector")
    import_embeddings.add_argument("--model", required=True, help="the model that made the vectors: a registry name, concat:A+B "
                                   "or a folder (not auto); identify embeds uploads with it")
    import_embeddings.add_argument("--features", choices=FEATURE_KINDS, help="the vectors' feature kind (default: the model's first)")
    import_embeddings.add_argument("--tta", choices=TTA_MODES, help="flip: the vectors average each photo with its mirror image")
    import_embeddings.add_argument("--species", type=Path, nargs="+", default=[],
                                   help="species table CSV(s) naming the class ids (as ingest takes them; e.g. class_list.csv)")
    import_embeddings.add_argument("--taxonomy", type=Path, help="taxonomy CSV giving every class its family (as ingest)")
    import_embeddings.add_argument("--country-table", type=Path, help="Species_Relevance.csv, recorded for the country prior (as ingest)")
    export_embeddings = sub.add_parser("export-embeddings", help="write the store's vectors as Parquet (the import-embeddings layout)")
    _store_arg(export_embeddings)
    export_embeddings.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    return parser


def _evaluate(args: argparse.Namespace) -> None:
    from snakeweb.decisions import CountryPrior
    from snakeweb.evaluation import evaluate
    from snakeweb.store import Store

    store = Store(args.store).require()
    # as predict, export and the Metrics page: the table recorded at ingest unless another is named
    table = args.country_table or store.get_meta("country_table")
    try:
        prior = CountryPrior.from_csv(table) if table else None
    except SnakewebError as exc:
        if args.country_table:
            raise
        raise SnakewebError(f"{exc} It is the table recorded when the store was built; give its new place with "
                            "--country-table FILE.") from exc
    if prior is not None:
        _check_prior(prior, store)
    report = evaluate(store, args.split, prior, args.aggregation, country_table=str(table) if table else None)
    if report.get("not_saved"):  # on stderr, so --json output stays JSON; the scores themselves are complete
        print(f"note: these scores are not saved in the store (the Metrics page computes them again): {report['not_saved']}",
              file=sys.stderr)
    if args.json:
        _emit(json.dumps(report))
        return
    print(f"evaluate: {report['observations']} {report['split']} observations, {report['head']} head on {report['model']}")
    if report.get("observations_without_usable_photos"):
        print(f"note: {report['observations_without_usable_photos']} labelled {report['split']} observation(s) are not scored: none "
              "of their photos could be read (see `images` rows with status 'error').")
    chosen = {k: v for k, v in report["chosen_on_validation"].items() if v is not None}
    print("chosen on validation: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in chosen.items()))
    if report.get("classes_with_unknown_venom_status"):
        print(f"note: {report['classes_with_unknown_venom_status']} species have venom status unknown; "
              "the metric counts them as venomous, as the venom-aware rule does.")
    print(f"{'variant':<22}{'F1':>8}{'Acc':>8}{'Track1':>8}{'Track2':>8}   PSC % [h>h, h>v, v>h, v>v]")
    for name, s in report["variants"].items():
        print(f"{name:<22}{s['F1 Score']:>8.2f}{s['Accuracy']:>8.2f}{s['Track1 Metric']:>8.2f}{s['Track2 Metric']:>8}   {s['PSC']}")
    # the answers people get (snakeweb.answers.decide with the thresholds chosen on validation), per rank, and the
    # venom-critical figures (snakeweb.rank_metrics)
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    thresholds = report.get("thresholds")
    if thresholds:
        chosen = ", ".join(f"{r} " + ("never" if thresholds.get(r) is None else f"{thresholds[r]:.3f}") for r in ("species", "genus", "family"))
        weight = f"; answer venom weight {thresholds['venom_weight']:g}" if thresholds.get("venom_weight") else ""
        print(f"answers: thresholds chosen on validation for {thresholds['target_precision']:.0%} precision: {chosen}{weight}")
    if report.get("answers_note"):
        print(f"note: {report['answers_note']}")
    for variant, answers in (report.get("answers") or {}).items():
        summary, accuracy, venom = answers["summary"], answers["rank_accuracy"], answers["venom_critical"]
        print(f"answers {variant}: {answers['observations']} observations"
              + (f" ({answers['outside_head']} of species outside the head left out)" if answers["outside_head"] else ""))
        print(f"  {'rank':<10}{'answered':>10}{'share':>9}{'correct':>9}{'top-1 if forced':>17}")
        for rank, figures in summary["ranks"].items():
            forced = pct(accuracy[rank]["accuracy"]) if rank in accuracy else ""
            print(f"  {rank:<10}{figures['answered']:>10}{pct(figures['coverage']):>9}{pct(figures['accuracy']):>9}{forced:>17}")
        both, reliability = summary["species_or_genus"], answers["reliability"]
        print(f"  species or genus: {pct(both['coverage'])} of photos, {pct(both['precision'])} correct at the rank answered; ECE top-1 "
              f"{pct(reliability['species']['ece'])}, p(venomous) {pct(reliability['p_venomous']['ece'])}")
        print(f"  venom-critical: of {venom['venomous_observations']} venomous, {venom['answered_harmless']} "
              f"({pct(venom['answered_harmless_share'])}) answered harmless, {venom['low_p_venomous']} "
              f"({pct(venom['low_p_venomous_share'])}) with p(venomous) < 0.5; of {venom['harmless_observations']} harmless, "
              f"{venom['answered_venomous']} ({pct(venom['answered_venomous_share'])}) answered venomous")


def _check_prior(prior, store: Store) -> None:
    """A country prior must be able to change something: species the table knows, observations with a country."""
    prior.require_species(store.species()["binomial_name"].tolist())
    countries = store.query("SELECT country_code FROM observations")["country_code"]
    known = countries.dropna().map(prior.knows)
    if not known.any():
        raise SnakewebError(f"None of the store's {len(countries)} observations has a country the species x country table knows "
                            "(photo folders carry no country; SnakeCLEF metadata has a code column), so the country prior would "
                            "change nothing; leave it out.")
    if len(known) < len(countries) or not known.all():
        print(f"note: {len(countries) - int(known.sum())} of {len(countries)} observations have no country the table knows; "
              "they get no country prior.", file=sys.stderr)


def _score(args: argparse.Namespace) -> None:
    from snakeweb.scoring import official_scores, read_submission, read_truth, read_venomous_list

    truth, flags = read_truth(args.metadata), read_venomous_list(args.venomous)
    unlabelled = truth.drop_duplicates("observation_id")["class_id"].isna()
    if unlabelled.any() and not unlabelled.all():
        print(f"note: {int(unlabelled.sum())} ground-truth observation(s) have no class_id and are not scored; "
              f"{int((~unlabelled).sum())} are.", file=sys.stderr)
    submission = read_submission(args.predictions)
    for what, ids in (("ground-truth", truth["class_id"].dropna()), ("predicted", submission["class_id"])):
        unlisted = sorted(set(ids.astype(int)) - set(flags.index))
        if unlisted:
            print(f"note: {len(unlisted)} {what} class id(s) are not in the venomous list (e.g. "
                  f"{', '.join(map(str, unlisted[:5]))}); the official metric counts them as harmless.", file=sys.stderr)
    scores = official_scores(truth, submission, set(flags.index[flags.to_numpy()].astype(int)))
    if args.json:
        _emit(json.dumps(scores))
        return
    p00, p01, p10, p11 = scores["PSC"]
    c00, c01, c10, c11 = scores["PSC_total"]
    print(f"macro F1       {scores['F1 Score']:.2f}\naccuracy       {scores['Accuracy']:.2f}")
    print(f"harmless->harmless (other) {p00:.2f}% ({c00})\nharmless->venomous  {p01:.2f}% ({c01})")
    print(f"venomous->harmless  {p10:.2f}% ({c10})\nvenomous->venomous (other) {p11:.2f}% ({c11})")
    print(f"Track1 (higher is better) {scores['Track1 Metric']:.2f}\nTrack2 (lower is better)  {scores['Track2 Metric']}")


def _export(args: argparse.Namespace) -> None:
    from snakeweb.decisions import CountryPrior
    from snakeweb.store import Store

    prior = None
    if args.prior is None:  # answers follow identify (the recorded table, where observations have countries)
        store = Store(args.store).require()
        has_countries = args.answers and bool(store.query("SELECT count(country_code) AS n FROM observations")["n"][0])
        args.prior = "country" if has_countries and (args.country_table or store.get_meta("country_table")) else "none"
    if args.answers and args.range_mode == "filter" and args.prior != "country":
        raise SnakewebError("--range-mode filter needs a species x country table: give --prior country (and --country-table "
                            "if the store records none).")
    if args.prior == "country":
        table = args.country_table or Store(args.store).require().get_meta("country_table")
        if table is None:
            raise SnakewebError("--prior country needs --country-table Species_Relevance.csv (the store records none).")
        prior = CountryPrior.from_csv(table)
        _check_prior(prior, Store(args.store).require())
    store = Store(args.store)
    if args.answers:
        from snakeweb.export import export_answers

        records = export_answers(store.require(), args.out, prior=prior, range_mode=args.range_mode, rank=args.rank,
                                 aggregation=args.aggregation, split=args.split)
        ranks = _counts([r["prediction_rank"] or "abstain" for r in records])
        print(f"export: {len(records)} observations' answers -> {args.out} ({ranks}; country prior {args.prior}, range {args.range_mode})")
        return
    from snakeweb.export import export_submission

    submission = export_submission(store, args.out, args.decision, prior, args.aggregation)
    print(f"export: {len(submission)} observations -> {args.out} (decision {args.decision}, prior {args.prior})")
    numbered = set(store.get_meta("assigned_class_ids") or [])
    invented = submission[submission["class_id"].isin(numbered)]
    if len(invented):
        names = store.species().set_index("class_id")["binomial_name"]
        shown = ", ".join(f"{names.get(c, '?')} -> {c}" for c in sorted(set(invented["class_id"]))[:5])
        print(f"note: {len(invented)} observation(s) are predicted as classes snakeweb numbered itself because no species "
              f"table gave them an id ({shown}); a SnakeCLEF scorer counts those as wrong. Give --species class_list.csv "
              "at ingest to use SnakeCLEF's ids.", file=sys.stderr)


def _counts(values: list[str]) -> str:
    """'species 120, genus 40, abstain 3': counts in order of first appearance."""
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(kind=args.head, balanced=args.balanced, max_epochs=args.epochs, learning_rates=tuple(args.lr))


def _ingest(args: argparse.Namespace) -> None:
    from snakeweb.ingest import ingest
    from snakeweb.species import read_species_table
    from snakeweb.store import Store

    store = Store(args.store)
    known = store.require().species() if store.exists() else None  # names-only tables take the store's ids
    table = read_species_table(args.species, known) if args.species else None
    counts = ingest(store, images=args.images, metadata=args.metadata, image_root=args.image_root,
                    species_table=table, country_table=args.country_table, taxonomy=args.taxonomy)
    print(f"ingest: {counts['added']} new image(s), {counts['already_present']} already in the store"
          + (f", {counts['rejected']} rejected (see the Build page or `images` rows with status 'error')" if counts["rejected"] else "")
          + (f", {len(counts['skipped'])} non-photo file(s) skipped" if counts["skipped"] else "")
          + (f", {len(counts['hidden'])} hidden file(s) left out" if counts.get("hidden") else ""))


def _embed(args: argparse.Namespace) -> None:
    from snakeweb import stages
    from snakeweb.store import Store

    counts = stages.embed(Store(args.store), model=args.model, feature_kind=args.features,
                          batch_size=args.batch_size, reembed=args.reembed, device=args.device, tta=args.tta, backend=args.backend,
                          views=args.views)
    print(f"embed: {counts['embedded']} embedded, {counts['errors']} unreadable, "
          f"{counts['images_per_second'] or '-'} images/s"
          + (f"; {counts['view_vectors']} augmented training view(s)" if counts["view_vectors"] else ""))


def _build(args: argparse.Namespace) -> None:
    from snakeweb import stages
    from snakeweb.embed import resolve_device
    from snakeweb.store import Store

    resolve_device(args.device)  # a device that cannot be used is said before the store is made
    store = Store(args.store)
    _ingest(args)
    _embed(args)
    stages.index(store)
    stages.train(store, _train_config(args), force=args.force, include_reviews=args.include_reviews)
    stages.predict(store, args.aggregation)
    if not args.skip_project:
        stages.project(store)
    print(f"build: done; identify with `python -m pipelines identify --store {store.root} PHOTO...`")


# prediction_source in words, for people (the JSON keeps the schema's terms)
SOURCE_WORDS = {"classifier": "the classifier's top species", "rollup": "rolled up: the species was uncertain",
                "range_filter": "changed by the country check", "venom_rule": "withheld: possibly venomous",
                "abstain": "nothing likely enough to name"}


def _print_identification(result, as_json: bool) -> None:
    if as_json:
        _emit(json.dumps(result.to_json()))
        return
    print("observation: " + ", ".join(result.inputs)
          + (f" (country {result.country}, range {result.range_mode})" if result.country_prior_applied else ""))
    for failure in result.failures:
        print(f"  skipped photo {failure.index + 1} ({failure.name}): {failure.reason}")
    for note in result.notes:
        print(f"  note: {note}")
    flags = {"venomous": "VENOMOUS", "harmless": "harmless", "unknown": "venom status UNKNOWN (treat as possibly venomous)"}
    lead = {"danger": "DANGER", "caution": "CAUTION", "harmless": "LOW RISK", "unknown": "VENOM STATUS UNKNOWN"}[result.venom_level]
    print(f"  {lead}: {result.headline}")
    print(f"  answer: {result.answer_text}  [{SOURCE_WORDS[result.prediction_source]}; "
          f"{flags[result.venom_status] if result.prediction_rank else 'venom status unknown'}]")
    print("  top species from the classifier" + (" after the country step:" if result.country_prior_applied else ":"))
    for rank, s in enumerate(result.species, 1):
        family = f", {s.family}" if s.family else ""
        print(f"  {rank}. {s.binomial_name} (class {s.class_id}{family})  {s.probability:6.1%}  {flags[s.venom_status]}")
    if result.out_of_store:
        print("  NOT A SNAKE IN THIS STORE: the photo is farther from every reference than validation snakes are.")
    elif result.uncertain:
        print("  UNCERTAIN: the candidates above are possibilities, not an identification.")
    print(f"  {result.explanation}")
    if result.neighbours:
        print("  nearest reference images:")
    for n in result.neighbours:
        print(f"    image {n.image_id}  similarity {n.similarity:.4f}  {n.binomial_name or 'unlabelled'}  {n.path}")


def _identify(args: argparse.Namespace) -> int:
    """0 when at least one observation was identified (photos that could not be read are reported with it),
    2 when none could be."""
    from dataclasses import asdict

    from snakeweb.countries import resolve_country
    from snakeweb.identify import SCHEMA_VERSION, Identifier
    from snakeweb.store import Store

    args.country = (args.country or "").strip() or None  # --country "" (an empty shell variable) means none
    if args.country:
        resolve_country(args.country, "--country")  # before loading any model: a wrong country stops at once
    identifier = Identifier(Store(args.store), country_table=args.country_table)
    groups = [[p] for p in args.images] if args.each else [args.images]
    failures = 0
    for group in groups:
        try:
            result = identifier.identify([(str(p), p) for p in group], args.top_k, args.neighbours, args.aggregation,
                                         country=args.country, uncertain_below=args.uncertain_below, rank=args.rank,
                                         range_mode=args.range_mode)
        except SnakewebError as exc:
            failures += 1
            if args.json:
                # the schema's identification_error: what was asked, why nothing came of it, and each photo's reason
                _emit(json.dumps({"schema": SCHEMA_VERSION, "inputs": [str(p) for p in group], "error": str(exc),
                                  "failures": [asdict(f) for f in getattr(exc, "failures", [])]}))
            else:
                print(f"error: {exc}", file=sys.stderr)
            continue
        _print_identification(result, args.json)
    return 2 if failures == len(groups) else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if getattr(args, "json", False):
        with _json_only_on_stdout():
            return _run(args)
    return _run(args)


def _import_reviews(args: argparse.Namespace) -> None:
    from snakeweb.review import import_reviews
    from snakeweb.store import Store

    counts = import_reviews(Store(args.store).require(), args.csv)
    print(f"import-reviews: {counts['added']} review(s) added, {counts['already_present']} already in the store")


def _import_embeddings(args: argparse.Namespace) -> None:
    from snakeweb.embeddings_io import import_embeddings
    from snakeweb.species import read_species_table
    from snakeweb.store import Store

    store = Store(args.store)
    known = store.require().species() if store.exists() else None
    table = read_species_table(args.species, known) if args.species else None
    counts = import_embeddings(store, args.parquet, args.model, feature_kind=args.features, tta=args.tta, species_table=table,
                               taxonomy=args.taxonomy, country_table=args.country_table)
    if counts["families"]:
        print(counts["families"])
    print(f"import-embeddings: {counts['added']} vector(s) added ({counts['new_images']} new image(s)), "
          f"{counts['already_present']} already in the store"
          + (f", {counts['rejected']} left out (their photos were rejected at ingest)" if counts["rejected"] else "")
          + f"; model {counts['model']} ({counts['fingerprint']}), {counts['dim']}-d {counts['feature_kind']} features")


def _export_embeddings(args: argparse.Namespace) -> None:
    from snakeweb.embeddings_io import export_embeddings
    from snakeweb.store import Store

    counts = export_embeddings(Store(args.store), args.out)
    print(f"export-embeddings: {counts['rows']} vector(s) ({counts['dim']}-d {counts['feature_kind']}, {counts['fingerprint']}) -> {args.out}")


def _stage(args: argparse.Namespace) -> None:
    """One of the stages that need the heavy libraries (torch, faiss, umap): they are imported here, for these commands only."""
    from snakeweb import stages
    from snakeweb.store import Store

    store = Store(args.store)
    if args.command == "index":
        stages.index(store, force=args.force)
    elif args.command == "train":
        stages.train(store, _train_config(args), force=args.force, include_reviews=args.include_reviews)
    elif args.command == "predict":
        stages.predict(store, args.aggregation)
    elif args.command == "project":
        stages.project(store, force=args.force)


# the commands that build a store: one at a time per store (snakeweb.writer_lock)
WRITING_COMMANDS = {"build", "ingest", "embed", "index", "train", "predict", "project", "import-embeddings"}


def _run(args: argparse.Namespace) -> int:
    if args.command in WRITING_COMMANDS:
        from snakeweb.writer_lock import one_writer

        try:
            with one_writer(args.store, args.command):
                return _run_command(args)
        except SnakewebError as exc:  # the lock's own refusal; the command's errors are said inside
            return _say(args, exc)
    return _run_command(args)


def _say(args: argparse.Namespace, exc: SnakewebError) -> int:
    """The error's sentence on stderr (and as JSON on stdout for --json); exit code 2."""
    print(f"error: {exc}", file=sys.stderr)
    if getattr(args, "json", False):  # a script reading stdout gets the reason as JSON too
        _emit(json.dumps({"error": str(exc)}))
    return 2


def _run_command(args: argparse.Namespace) -> int:
    try:
        if args.command in ("build", "embed", "import-embeddings", "identify", "evaluate"):
            from snakeweb.threads import available_cpus

            available_cpus()  # a bad SNAKEWEB_THREADS is said before any work (a build used to ingest first)
        if args.command == "build":
            _build(args)
        elif args.command == "ingest":
            _ingest(args)
        elif args.command == "embed":
            _embed(args)
        elif args.command in ("index", "train", "predict", "project"):
            _stage(args)
        elif args.command == "identify":
            return _identify(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "check":
            from snakeweb.integrity import check_store
            from snakeweb.store import Store

            verdicts = check_store(Store(args.store))
            for verdict in verdicts:
                print(verdict.line())
            return 0 if all(v.ok for v in verdicts) else 1
        elif args.command == "score":
            _score(args)
        elif args.command == "export":
            _export(args)
        elif args.command == "import-reviews":
            _import_reviews(args)
        elif args.command == "import-embeddings":
            _import_embeddings(args)
        elif args.command == "export-embeddings":
            _export_embeddings(args)
    except SnakewebError as exc:
        return _say(args, exc)
    except OSError as exc:  # a path the user gave that the system refuses (permissions, a full disk, a file for a folder)
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}; check the paths you gave and that the disk has room.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to go on.", file=sys.stderr)
        return 130
    except Exception as exc:
        # DuckDB past its memory cap (named by class, so light commands need not import duckdb to catch it)
        if type(exc).__name__ != "OutOfMemoryException" or "duckdb" not in type(exc).__module__:
            raise
        from snakeweb.store import DUCKDB_MEMORY

        print(f"error: DuckDB ran out of memory under its cap SNAKEWEB_DUCKDB_MEMORY={DUCKDB_MEMORY} ({str(exc).splitlines()[0]}); "
              "set it higher (e.g. 2GB, the default) and run the command again.", file=sys.stderr)
        return 2
    return 0
