"""`python -m pipelines STAGE ...`: each command's handler, thin; the work is in `snakeweb`, the arguments in
`pipelines.arguments`, the text people read in `pipelines.reports`; the commands that run no backbone (score,
evaluate, export, the imports and exports) are in `pipelines.results`, and where results go with --json in
`pipelines.output`.

The exit codes and the --json contract are in `pipelines.arguments.DESCRIPTION` (what `--help` prints).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys

# Only light modules at the top (standard library and snakeweb modules that import no NumPy, pandas or torch):
# `--help`, argument errors and `score` must not wait for torch, transformers, faiss or umap. Every handler
# imports the library modules it uses (tests/test_cli_imports.py checks this in a fresh process).
from pipelines import results
from pipelines.arguments import parser
from pipelines.output import discard_stdout, json_only_on_stdout
from pipelines.output import emit as _emit
from pipelines.reports import print_identification
from snakeweb.errors import SnakewebError, shell_word
from snakeweb.options import TrainConfig


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(kind=args.head, balanced=args.balanced, max_epochs=args.epochs, learning_rates=tuple(args.lr))


def _ingest(args: argparse.Namespace) -> None:
    from snakeweb.ingest import ingest
    from snakeweb.species import read_species_table
    from snakeweb.store import Store
    from snakeweb.taxonomy import species_as_flagged

    store = Store(args.store)
    known = species_as_flagged(store)  # the flags its tables gave; names-only tables take its ids
    table = read_species_table(args.species, known) if args.species else None
    counts = ingest(store, images=args.images, metadata=args.metadata, image_root=args.image_root,
                    species_table=table, country_table=args.country_table, taxonomy=args.taxonomy,
                    remove_gone=args.remove_gone)
    print(f"ingest: {counts['added']} new image(s), {counts['already_present']} already in the store"
          + (f", {counts['rejected']} rejected (see the Build page or `images` rows with status 'error')" if counts["rejected"] else "")
          + (f", {len(counts['skipped'])} non-photo file(s) skipped" if counts["skipped"] else "")
          + (f", {len(counts['hidden'])} hidden file(s) left out" if counts.get("hidden") else "")
          + (f", {counts['changed']} changed since embedded (embedded again)" if counts.get("changed") else "")
          + (f", {counts['removed']} gone from the folder removed" if counts.get("removed") else "")
          + (f", {counts['gone']} gone from the folder kept (--remove-gone removes them)" if counts.get("gone") else ""))


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
    created = not store.exists()
    if args.model and args.model != "auto":
        from snakeweb.models import check_loadable

        check_loadable(args.model)  # a local folder whose weights do not fit, before ingest adds or removes a photo
    _ingest(args)
    with store.refused_before_embedding(created):  # a hub model that will not load is found only here, after ingest
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


SIGPIPE_EXIT = 128 + 13  # the exit code of a Unix tool killed by SIGPIPE: stdout's reader closed the pipe


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (see pipelines.arguments.DESCRIPTION)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if "--json" not in words:
        args = parser().parse_args(argv)
    else:  # an argument error is said as JSON on stdout too (it printed nothing there), and as usual on stderr
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                args = parser().parse_args(argv)
        except SystemExit as exc:
            sys.stderr.write(said.getvalue())
            if exc.code:
                last = (said.getvalue().strip().splitlines() or ["error: the arguments could not be read"])[-1]
                error = last.split("error: ", 1)[-1].strip()
                if words and words[0] == "identify":  # the schema's identification_error
                    from snakeweb.identification import SCHEMA_VERSION

                    print(json.dumps({"schema": SCHEMA_VERSION, "inputs": [], "error": error, "failures": []}))
                else:
                    print(json.dumps({"error": error}))
            raise
        sys.stderr.write(said.getvalue())
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if getattr(args, "json", False):
            with json_only_on_stdout():
                code = _run(args)
        else:
            code = _run(args)
        sys.stdout.flush()  # a pipe closed after the last write is found here, not by Python's flush at exit
        return code
    except BrokenPipeError:  # stdout's reader went away (`... | head -1`): as Unix tools, no message
        discard_stdout()  # what is still buffered is dropped at exit instead of raising again
        return SIGPIPE_EXIT


def _stage(args: argparse.Namespace) -> None:
    """One of the stages that need the heavy libraries (torch, faiss, umap): they are imported here, for these commands only."""
    from snakeweb import stages
    from snakeweb.store import Store

    store = Store(args.store)
    if args.command == "index":
        stages.index(store, force=args.force)
    elif args.command == "train":
        stages.train(store, _train_config(args), force=args.force, include_reviews=args.include_reviews)
        stages.refresh_predictions(store)  # the Review queues and `check` read them: a new head makes them stale
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
        if args.command == "identify":  # the schema's identification_error, as for photos that could not be read
            from snakeweb.identification import SCHEMA_VERSION

            _emit(json.dumps({"schema": SCHEMA_VERSION, "inputs": [str(p) for p in args.images], "error": str(exc), "failures": []}))
        else:
            _emit(json.dumps({"error": str(exc)}))
    return 2


def _run_command(args: argparse.Namespace) -> int:
    try:
        if args.command in ("build", "embed", "import-embeddings", "identify", "evaluate"):
            from snakeweb.threads import available_cpus

            available_cpus()  # a bad SNAKEWEB_THREADS is said before any work (a build used to ingest first)
        if args.command in ("build", "predict", "identify", "evaluate"):  # before any work: a build would embed first
            from snakeweb.options import require_probabilities

            require_probabilities(args.aggregation, "the answers" if args.command != "evaluate" else "the venom-aware scores")
        model = getattr(args, "model", None)
        if model and model != "auto":
            from snakeweb.models import require_feature_kind, resolve_model

            # an unknown name, a concat: part that is empty, auto or named twice, or features the model does not give,
            # said at once, before torch is imported (auto asks the hub: later)
            require_feature_kind(resolve_model(model), getattr(args, "features", None))
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
            results.evaluate_command(args)
        elif args.command == "check":
            from snakeweb.integrity import check_store
            from snakeweb.store import Store

            verdicts = check_store(Store(args.store))
            for verdict in verdicts:
                print(verdict.line())
            return 0 if all(v.ok for v in verdicts) else 1
        elif args.command == "score":
            results.score_command(args)
        elif args.command == "export":
            results.export_command(args)
        elif args.command == "import-reviews":
            results.import_reviews_command(args)
        elif args.command == "import-embeddings":
            results.import_embeddings_command(args)
        elif args.command == "export-embeddings":
            results.export_embeddings_command(args)
    except SnakewebError as exc:
        return _say(args, exc)
    except BrokenPipeError:  # stdout's reader went away: not a path of the user's (main exits 141)
        raise
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
