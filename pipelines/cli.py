"""`python -m pipelines STAGE ...`: each command's handler, thin; the work is in `snakeweb`, the arguments in
`pipelines.arguments` and the text people read in `pipelines.reports`.

The exit codes and the --json contract are in `pipelines.arguments.DESCRIPTION` (what `--help` prints).
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
from typing import TYPE_CHECKING

# Only light modules at the top (standard library and snakeweb modules that import no NumPy, pandas or torch):
# `--help`, argument errors and `score` must not wait for torch, transformers, faiss or umap. Every handler
# imports the library modules it uses (tests/test_cli_imports.py checks this in a fresh process).
from pipelines.arguments import parser
from pipelines.reports import print_evaluation, print_identification
from snakeweb.errors import SnakewebError, shell_word
from snakeweb.options import TrainConfig

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


def _evaluate(args: argparse.Namespace) -> None:
    from snakeweb.decisions import CountryPrior
    from snakeweb.evaluation import evaluate
    from snakeweb.store import Store

    store = Store(args.store).require()
    # as predict, export and the Metrics page: the table recorded at ingest unless another is named
    table = args.country_table or store.get_meta("country_table")
    try:
        prior = CountryPrior.from_csv(table, notes=bool(args.country_table)) if table else None
    except SnakewebError as exc:
        if args.country_table:
            raise
        raise SnakewebError(f"{exc} It is the table recorded when the store was built; give its new place with "
                            "--country-table FILE.") from exc
    if prior is not None:
        try:
            _check_prior(prior, store, advice="leave it out" if args.country_table else None)
        except SnakewebError as exc:
            if args.country_table:  # the user named it: a prior that changes nothing is their mistake to hear
                raise
            # the table recorded at build, on a store of photo folders (no countries): scores without the prior
            print(f"note: the species x country table recorded at build is not used here: {exc}", file=sys.stderr)
            prior, table = None, None
    report = evaluate(store, args.split, prior, args.aggregation, country_table=str(table) if table else None)
    if report.get("not_saved"):  # on stderr, so --json output stays JSON; the scores themselves are complete
        print(f"note: these scores are not saved in the store (the Metrics page computes them again). {report['not_saved']}",
              file=sys.stderr)
    if args.json:
        _emit(json.dumps(report))
        return
    print_evaluation(report)


def _check_prior(prior, store: Store, advice: str | None = "leave it out") -> None:
    """A country prior must be able to change something: species the table knows, observations with a country.
    Raises SnakewebError, its sentence ending with `advice` where one is given."""
    prior.require_species(store.species()["binomial_name"].tolist())
    countries = store.query("SELECT country_code FROM observations")["country_code"]
    known = countries.dropna().map(prior.knows)
    if not known.any():
        raise SnakewebError(f"None of the store's {len(countries)} observations has a country the species x country table knows "
                            "(photo folders carry no country; SnakeCLEF metadata has a code column), so the country prior would "
                            "change nothing" + (f"; {advice}." if advice else "."))
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
                  f"{', '.join(map(str, unlisted[:5]))}); the official metric counts them as harmless, so a venomous one "
                  "called harmless is not counted as a venom error: give a venomous list with every class "
                  "(SnakeCLEF's venomous_status_list.csv has them all).", file=sys.stderr)
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
        prior = CountryPrior.from_csv(table, notes=bool(args.country_table))  # a recorded table said its notes at ingest
        _check_prior(prior, Store(args.store).require())
    store = Store(args.store)
    if args.split:  # an empty split wrote a header-only (or empty) file with exit 0
        counts = dict(store.require().query("SELECT split, count(*) AS n FROM observations GROUP BY split").itertuples(index=False))
        if not counts.get(args.split):
            raise SnakewebError(f"The store has no observations in the {args.split} split, so there is nothing to export "
                                f"(it has {', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'}).")
    if args.answers:
        from snakeweb.export import export_answers

        records = export_answers(store.require(), args.out, prior=prior, range_mode=args.range_mode, rank=args.rank,
                                 aggregation=args.aggregation, split=args.split)
        ranks = _counts([r["prediction_rank"] or "abstain" for r in records])
        print(f"export: {len(records)} observations' answers -> {args.out} ({ranks}; country prior {args.prior}, range {args.range_mode})")
        return
    from snakeweb.export import export_submission

    submission = export_submission(store, args.out, args.decision, prior, args.aggregation, split=args.split)
    print(f"export: {len(submission)} {args.split + ' ' if args.split else ''}observations -> {args.out} (decision {args.decision}, "
          f"prior {args.prior})")
    numbered = set(store.get_meta("assigned_class_ids") or [])
    invented = submission[submission["class_id"].isin(numbered)]
    if len(invented):
        names = store.species().set_index("class_id")["binomial_name"]
        shown = ", ".join(f"{names.get(c, '?')} -> {c}" for c in sorted(set(invented["class_id"]))[:5])
        print(f"note: {len(invented)} observation(s) are predicted as classes snakeweb numbered itself because no species "
              f"table gave them an id ({shown}); a SnakeCLEF scorer counts those as wrong. These species are not in the species "
              "table given at ingest (or none was given): give one that has them (--species class_list.csv) to use "
              "SnakeCLEF's ids, or leave their photos out.", file=sys.stderr)


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
    from snakeweb.store import Store

    # a device that cannot be used is said before the store is made; with none asked there is nothing to check, and
    # a missing --images folder is said before torch is imported
    if args.device:
        from snakeweb.embed import resolve_device

        resolve_device(args.device)
    store = Store(args.store)
    _ingest(args)
    _embed(args)
    from snakeweb import stages

    stages.index(store)
    stages.train(store, _train_config(args), force=args.force, include_reviews=args.include_reviews)
    stages.predict(store, args.aggregation)
    if not args.skip_project:
        stages.project(store)
    print(f"build: done; identify with `python -m pipelines identify --store {shell_word(store.root)} PHOTO...`")


def _identify(args: argparse.Namespace) -> int:
    """0 when at least one observation was identified (photos that could not be read are reported with it),
    2 when none could be."""
    from dataclasses import asdict

    from snakeweb.countries import resolve_country
    from snakeweb.identification import SCHEMA_VERSION
    from snakeweb.store import Store

    args.country = (args.country or "").strip() or None  # --country "" (an empty shell variable) means none
    if args.country:
        resolve_country(args.country, "--country")  # before loading any model: a wrong country stops at once
    store = Store(args.store).require()  # likewise a missing store, before torch and FAISS are imported
    from snakeweb.identify import Identifier

    identifier = Identifier(store, country_table=args.country_table)
    groups = [[p] for p in args.images] if args.each else [args.images]
    failures = 0
    for group in groups:
        try:
            result = identifier.identify([(str(p), p) for p in group], args.top_k, args.neighbours, args.aggregation,
                                         country=args.country, uncertain_below=args.uncertain_below, rank=args.rank,
                                         range_mode=args.range_mode)
        except SnakewebError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)  # for a person, as every other refusal; stdout stays JSON only
            if args.json:
                # the schema's identification_error: what was asked, why nothing came of it, and each photo's reason
                _emit(json.dumps({"schema": SCHEMA_VERSION, "inputs": [str(p) for p in group], "error": str(exc),
                                  "failures": [asdict(f) for f in getattr(exc, "failures", [])]}))
            continue
        if args.json:
            _emit(json.dumps(result.to_json()))
        else:
            print_identification(result)
    return 2 if failures == len(groups) else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
        print("interrupted: finished work is kept; run the same command again to go on." if args.command in WRITING_COMMANDS
              else "interrupted.", file=sys.stderr)
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
