"""The handlers of the commands that read a store or tables and write results, without running a backbone:
`evaluate`, `score`, `export`, `import-reviews`, `import-embeddings`, `export-embeddings`. Thin, as in
`pipelines.cli`: the work is in `snakeweb`, and each handler imports the library modules it uses (so `score`
never waits for torch)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.output import emit, emit_file, json_only_on_stdout
from pipelines.reports import print_evaluation
from snakeweb.errors import SnakewebError

if TYPE_CHECKING:
    from snakeweb.store import Store


def evaluate_command(args: argparse.Namespace) -> None:
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
            check_prior(prior, store, advice="leave it out" if args.country_table else None)
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
        emit(json.dumps(report))
        return
    print_evaluation(report, args.store)


def check_prior(prior, store: Store, advice: str | None = "leave it out") -> None:
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


def score_command(args: argparse.Namespace) -> None:
    from snakeweb.scoring import UNKNOWN_SPECIES, official_scores, read_submission, read_truth, read_venomous_list

    piped = [f"--{name}" for name in ("metadata", "predictions", "venomous") if str(getattr(args, name)) == "-"]
    if len(piped) > 1:  # one stream holds one table: the second reader would find it empty
        raise SnakewebError(f"{' and '.join(piped)} both read standard input (-), which holds one table: pipe one of them "
                            "and give the other's file path.")
    truth, flags = read_truth(args.metadata), read_venomous_list(args.venomous)
    unlabelled = truth.drop_duplicates("observation_id")["class_id"].isna()
    if unlabelled.any() and not unlabelled.all():
        print(f"note: {int(unlabelled.sum())} ground-truth observation(s) have no class_id and are not scored; "
              f"{int((~unlabelled).sum())} are.", file=sys.stderr)
    submission = read_submission(args.predictions)
    labelled = truth["class_id"].dropna().astype(int)
    unknown_species = int((truth.drop_duplicates("observation_id")["class_id"] == UNKNOWN_SPECIES).sum())
    if unknown_species:
        print(f"note: {unknown_species} ground-truth observation(s) are of unknown species (class id -1): scored as the "
              "organisers score them, outside the venomous and harmless totals.", file=sys.stderr)
    consequence = {"ground-truth": "so if one is venomous, calling it harmless is not counted as a venom error",
                   "predicted": "so a venomous snake predicted as one counts as venomous called harmless"}
    for what, ids in (("ground-truth", labelled[labelled != UNKNOWN_SPECIES]), ("predicted", submission["class_id"].astype(int))):
        unlisted = ids[~ids.isin(flags.index)]
        if len(unlisted):
            shown = sorted(set(unlisted))
            print(f"note: {len(shown)} {what} class id(s), in {len(unlisted)} row(s), are not in the venomous list (e.g. "
                  f"{', '.join(map(str, shown[:5]))}); the official metric counts them as harmless, {consequence[what]}: give "
                  "a venomous list with every class (SnakeCLEF's venomous_status_list.csv has them all).", file=sys.stderr)
    scores = official_scores(truth, submission, set(flags.index[flags.to_numpy()].astype(int)))
    if args.json:
        emit(json.dumps(scores))
        return
    p00, p01, p10, p11 = scores["PSC"]
    c00, c01, c10, c11 = scores["PSC_total"]
    print(f"macro F1       {scores['F1 Score']:.2f}\naccuracy       {scores['Accuracy']:.2f}")
    print(f"harmless->harmless (other) {p00:.2f}% ({c00})\nharmless->venomous  {p01:.2f}% ({c01})")
    print(f"venomous->harmless  {p10:.2f}% ({c10})\nvenomous->venomous (other) {p11:.2f}% ({c11})")
    print(f"Track1 (higher is better) {scores['Track1 Metric']:.2f}\nTrack2 (lower is better)  {scores['Track2 Metric']}")


def export_command(args: argparse.Namespace) -> None:
    """`export`: a submission or the answers file; `--out -` writes it to stdout, and what export says to stderr."""
    if str(args.out) != "-":
        return _export(args, str(args.out))
    with tempfile.TemporaryDirectory(prefix="snakeweb-export-") as folder, json_only_on_stdout():
        args.out = Path(folder) / ("answers.jsonl" if args.answers else "submission.csv")
        _export(args, "stdout")
        emit_file(args.out)


def _export(args: argparse.Namespace, shown: str) -> None:
    from snakeweb.decisions import CountryPrior
    from snakeweb.store import Store

    _refuse_unused_export_options(args)
    prior = None
    if args.prior is None and args.country_table:  # a table given is a table to use (it was read by nothing)
        args.prior = "country"
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
        check_prior(prior, Store(args.store).require())
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
        # an answer without a rank is withheld by the venom rule or an abstention: named by its source, as the file does
        ranks = counts_in_order([r["prediction_rank"] or r["prediction_source"] for r in records])
        print(f"export: {len(records)} observations' answers -> {shown} ({ranks}; country prior {args.prior}, range {args.range_mode})")
        abstained = [r["observation_id"] for r in records if r["prediction_source"] == "abstain" and r["p_venomous"] is None]
        if abstained:  # their records list each photo's reason; the command says what to do about them
            from snakeweb.export import left_out_notes

            for note in left_out_notes(store, abstained, "abstain"):
                print(f"note: {note}", file=sys.stderr)
        return
    from snakeweb.export import export_submission

    submission = export_submission(store, args.out, args.decision, prior, args.aggregation, split=args.split)
    print(f"export: {len(submission)} {args.split + ' ' if args.split else ''}observations -> {shown} (decision {args.decision}, "
          f"prior {args.prior})")
    wanted = store.query("SELECT observation_id, split FROM observations")
    wanted = wanted[wanted["split"] == args.split] if args.split else wanted
    left_out = sorted(set(wanted["observation_id"]) - set(submission["observation_id"]))
    if left_out:  # no probabilities, so no row (said, not dropped in silence; why: not embedded yet, or unreadable)
        from snakeweb.export import left_out_notes

        for note in left_out_notes(store, left_out, "are not in the submission (a SnakeCLEF scorer needs a row for each)"):
            print(f"note: {note}", file=sys.stderr)
    numbered = set(store.get_meta("assigned_class_ids") or [])
    invented = submission[submission["class_id"].isin(numbered)]
    if len(invented):
        names = store.species().set_index("class_id")["binomial_name"]
        examples = ", ".join(f"{names.get(c, '?')} -> {c}" for c in sorted(set(invented["class_id"]))[:5])
        print(f"note: {len(invented)} observation(s) are predicted as classes snakeweb numbered itself because no species "
              f"table gave them an id ({examples}); a SnakeCLEF scorer counts those as wrong. These species are not in the species "
              "table given at ingest (or none was given): give one that has them (--species class_list.csv) to use "
              "SnakeCLEF's ids, or leave their photos out.", file=sys.stderr)


def _refuse_unused_export_options(args: argparse.Namespace) -> None:
    """An option the export would not read is said, not ignored (a submission came out byte-identical with --rank
    genus, and --answers with --decision cost); the defaults of those given none are filled in."""
    if not args.answers and (args.rank or args.range_mode):
        raise SnakewebError("--rank and --range-mode shape answers: add --answers (a submission names one class id per observation, "
                            "chosen by --decision).")
    if args.answers and args.decision:
        raise SnakewebError("--decision chooses a submission's class ids; --answers are decided by the answer rules (the venom rule, "
                            "the rank roll-up; docs/decisions.md): leave --decision out, or leave --answers out.")
    if args.prior == "none" and args.country_table:
        raise SnakewebError("--country-table is read only with the country prior: leave out --prior none, or the table.")
    args.range_mode, args.decision = args.range_mode or "prior", args.decision or "argmax"


def counts_in_order(values: list[str]) -> str:
    """'species 120, genus 40, abstain 3': counts in order of first appearance."""
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def import_reviews_command(args: argparse.Namespace) -> None:
    from snakeweb.review import import_reviews
    from snakeweb.store import Store

    counts = import_reviews(Store(args.store).require(), args.csv)
    untimed = counts["untimed_already_present"]
    print(f"import-reviews: {counts['added']} review(s) added, {counts['already_present']} already in the store"
          + (f" ({untimed} without a reviewed_at, matched by observation, reviewer, class and note)" if untimed else ""))


def import_embeddings_command(args: argparse.Namespace) -> None:
    from snakeweb.embeddings_io import import_embeddings
    from snakeweb.species import read_species_table
    from snakeweb.store import Store
    from snakeweb.taxonomy import species_as_flagged

    store = Store(args.store)
    known = species_as_flagged(store)  # the flags the store's tables gave; names-only tables take its ids
    table = read_species_table(args.species, known) if args.species else None
    counts = import_embeddings(store, args.parquet, args.model, feature_kind=args.features, tta=args.tta, species_table=table,
                               taxonomy=args.taxonomy, country_table=args.country_table)
    if counts["families"]:
        print(counts["families"])
    print(f"import-embeddings: {counts['added']} vector(s) added ({counts['new_images']} new image(s)), "
          f"{counts['already_present']} already in the store"
          + (f", {counts['rejected']} left out (their photos were rejected at ingest)" if counts["rejected"] else "")
          + f"; model {counts['model']} ({counts['fingerprint']}), {counts['dim']}-d {counts['feature_kind']} features")


def export_embeddings_command(args: argparse.Namespace) -> None:
    from snakeweb.embeddings_io import export_embeddings
    from snakeweb.store import Store

    if str(args.out) == "-":
        raise SnakewebError("export-embeddings writes Parquet, a binary file, so not to stdout: give --out a file name.")
    counts = export_embeddings(Store(args.store), args.out)
    print(f"export-embeddings: {counts['rows']} vector(s) ({counts['dim']}-d {counts['feature_kind']}, {counts['fingerprint']}) -> {args.out}")
