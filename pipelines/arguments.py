"""The command line's arguments: every command, its options and their types (a usage sentence, never a
traceback, for a value out of range). Light imports only: `--help` and argument errors never wait for NumPy,
pandas or torch (tests/test_cli_imports.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from snakeweb.models import FEATURE_KINDS, TTA_MODES
from snakeweb.options import AGGREGATIONS, DECISIONS, HEAD_KINDS, RANGE_MODES, RANKS, SPLITS, TrainConfig
from snakeweb.train_views import DEFAULT_TRAIN_VIEWS, TRAIN_VIEWS

DESCRIPTION = """Exit codes: 0 done; 1 a check failed (`check`; a damaged store file is one); 2 bad input (an argument, a
table or a photo snakeweb cannot use: the message says which and why; `identify` also when none of its photos could be
identified); 130 interrupted; 141 stdout's reader closed the pipe (`... | head -1`), said by no message. With
`--json`, stdout carries only JSON: every library print and log goes to stderr."""


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


AGGREGATION_HELP = ("how an observation's photos are combined: mean-log (product of the photos' probabilities, the default), "
                    "mean-prob (their mean), mode (the paper's majority vote: vote shares, not probabilities, so only "
                    "for a submission's argmax)")


STDIN_READERS = "score's --metadata, --predictions and --venomous, and import-reviews"


def _out_path(text: str) -> Path:
    """An argparse type: a path to write, never an empty one (Path('') is the current folder, so `--out ""` from an
    unset shell variable named whatever folder the command ran in); `-` is kept, for the command to say what it does
    with standard output."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty (an unset shell variable?): give a file or folder name")
    return Path(text)


_out_path.__name__ = "path"


def _path(text: str) -> Path:
    """An argparse type: a file or folder to read, never an empty one (`--store ""` from an unset shell variable
    built a store in whatever folder the command ran in), nor `-`: these options read their file more than once or
    record its path (a country table is read again by identify), so standard input cannot stand in for it."""
    if text.strip() == "-":
        raise argparse.ArgumentTypeError(f"'-' (standard input) is read only by {STDIN_READERS}: give a file or folder name")
    return _out_path(text)


_path.__name__ = "path"


def _table(text: str) -> Path:
    """An argparse type: a table's path, or `-` for standard input (read once by snakeweb.tables.read_table)."""
    return _out_path(text)


_table.__name__ = "path"


def _path_text(text: str) -> str:
    """An argparse type: a path as the user wrote it (identify reports `./a.jpg` as given), never an empty one."""
    _path(text)
    return text


_path_text.__name__ = "path"


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, type=_path, help="store directory (created by ingest/build)")


def _ingest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=_path, help="folder with one subfolder of photos per species")
    parser.add_argument("--metadata", type=_path, nargs="+", default=[], help="SnakeCLEF metadata CSV(s)")
    parser.add_argument("--image-root", type=_path, help="folder that the metadata's image_path is relative to")
    parser.add_argument("--country-table", type=_path, help="Species_Relevance.csv, recorded for identify --country")
    parser.add_argument("--species", type=_path, nargs="+", default=[],
                        help="species table CSV(s): class_id, binomial_name, venomous/MIVS (e.g. class_list.csv)")
    parser.add_argument("--taxonomy", type=_path, help="taxonomy CSV (family, genus, species; e.g. serpentes.csv) giving every "
                        "class its family (default: $SNAKEWEB_TAXONOMY)")
    parser.add_argument("--remove-gone", action="store_true",
                        help="remove the store's photos from this --images folder that are no longer there (moved, renamed, "
                             "deleted): rows, vectors, predictions; reviews are kept; later stages rebuild index, head and map")


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
    parser.add_argument("--include-reviews", action=argparse.BooleanOptionalAction, default=None,
                        help="train on reviewers' corrected labels too (default: as the last train did)")


def parser() -> argparse.ArgumentParser:
    """Every command's arguments (what `--help` shows)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="all stages: ingest, embed, index, train, predict, project")
    _store_arg(build), _ingest_args(build), _embed_args(build), _train_args(build)
    build.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log", help=AGGREGATION_HELP)
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
    predict.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log", help=AGGREGATION_HELP)
    project = sub.add_parser("project", help="UMAP map of the embeddings")
    _store_arg(project)
    project.add_argument("--force", action="store_true")

    identify = sub.add_parser("identify", help="identify photos of one animal")
    _store_arg(identify)
    identify.add_argument("images", nargs="+", type=_path_text)
    identify.add_argument("--country", help="ISO country code or name where the photo was taken")
    identify.add_argument("--top-k", type=_whole(1), default=5, help="species to list (1 or more)")
    identify.add_argument("--neighbours", type=_whole(0), default=12, help="nearest reference images to list (0 for none)")
    identify.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log", help=AGGREGATION_HELP)
    identify.add_argument("--country-table", type=_path, help="species x country CSV (default: the one recorded by build)")
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
    score.add_argument("--metadata", required=True, type=_table,
                       help="ground truth: metadata CSV with observation_id, class_id (- reads it from standard input)")
    score.add_argument("--predictions", required=True, type=_table,
                       help="submission CSV: observation_id, class_id (- reads it from standard input, e.g. piped from export --out -)")
    score.add_argument("--venomous", required=True, type=_table, help="venomous list CSV: class_id, MIVS (- reads it from standard input)")
    score.add_argument("--json", action="store_true", help="one JSON object with the official key names")

    export = sub.add_parser("export", help="write a SnakeCLEF submission CSV, or every observation's answer (--answers)")
    _store_arg(export)
    export.add_argument("--out", required=True, type=_out_path, help="file to write (- writes it to standard output)")
    export.add_argument("--answers", action="store_true",
                        help="every observation's answer in the output schema (JSON lines, or CSV when --out ends .csv)")
    export.add_argument("--rank", choices=RANKS, help="--answers: answer at this rank (default: thresholds chosen on validation)")
    export.add_argument("--range-mode", choices=RANGE_MODES, help="--answers with --prior country: prior (default) or filter")
    export.add_argument("--split", choices=SPLITS, help="only this split's observations (default: every observation)")
    export.add_argument("--decision", choices=DECISIONS,
                        help="a submission's rule: argmax (default), or cost: minimise expected Track2 cost (venomous called "
                             "harmless costs 5); --answers decide by the answer rules instead")
    export.add_argument("--prior", choices=("country", "none"),
                        help="the country prior (default: country when --country-table is given; else none for a submission, "
                             "and for --answers the store's recorded table, as identify)")
    export.add_argument("--country-table", type=_path, help="species x country CSV (Species_Relevance.csv) for --prior country")
    export.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log", help=AGGREGATION_HELP)

    evaluate = sub.add_parser("evaluate", help="official metrics of the store's head on a held-out split")
    _store_arg(evaluate)
    evaluate.add_argument("--split", default="test", choices=("test", "val", "train"), help="test (default), val or train")
    evaluate.add_argument("--country-table", type=_path,
                          help="Species_Relevance.csv: also report with the country prior (default: the table recorded at ingest, if any)")
    evaluate.add_argument("--aggregation", choices=AGGREGATIONS, default="mean-log", help=AGGREGATION_HELP)
    evaluate.add_argument("--json", action="store_true")

    import_reviews = sub.add_parser("import-reviews", help="add reviews from a review export (the Review page's CSV)")
    _store_arg(import_reviews)
    import_reviews.add_argument("csv", type=_table, help="reviews CSV: observation_id, reviewer, new_class_id[, reviewed_at, note] "
                                "(- reads it from standard input)")

    import_embeddings = sub.add_parser("import-embeddings", help="add vectors computed elsewhere (Parquet) to a store, as ingest + embed would")
    import_embeddings.add_argument("--store", required=True, type=_path, help="store directory (created when absent)")
    import_embeddings.add_argument("--parquet", required=True, nargs="+", type=_path,
                                   help="Parquet file(s): path and/or image_id, observation_id, [class_id, split, country,] vector")
    import_embeddings.add_argument("--model", required=True, help="the model that made the vectors: a registry name, concat:A+B "
                                   "or a folder (not auto); identify embeds uploads with it")
    import_embeddings.add_argument("--features", choices=FEATURE_KINDS, help="the vectors' feature kind (default: the model's first)")
    import_embeddings.add_argument("--tta", choices=TTA_MODES, help="flip: the vectors average each photo with its mirror image")
    import_embeddings.add_argument("--species", type=_path, nargs="+", default=[],
                                   help="species table CSV(s) naming the class ids (as ingest takes them; e.g. class_list.csv)")
    import_embeddings.add_argument("--taxonomy", type=_path, help="taxonomy CSV giving every class its family (as ingest)")
    import_embeddings.add_argument("--country-table", type=_path, help="Species_Relevance.csv, recorded for the country prior (as ingest)")
    export_embeddings = sub.add_parser("export-embeddings", help="write the store's vectors as Parquet (the import-embeddings layout)")
    _store_arg(export_embeddings)
    export_embeddings.add_argument("--out", required=True, type=_out_path, help="Parquet file to write")
    return parser
