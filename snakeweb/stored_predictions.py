"""Whether the predict stage's rows (the `predictions` table) may still be read as the head's answers.

The table is a cache of `heads.observation_probabilities`: written by `stages.predict`, read by the Review page's
queues (snakeweb.review), the map's correct / incorrect colouring (snakeweb.explore) and `check`. `export`,
`identify` and `evaluate` never read it: they run the head again, so their answers cannot come from stale rows.

Rows are refused, with a sentence naming `python -m pipelines predict --store S`, when they are not what the
current head would write: made by another head.pt than the one in the store now (trained again, or replaced),
or by a snakeweb that did not record its head; class ids the species table or the head's label map lacks;
observations with no embedded photo, or embedded observations without rows; probabilities that are NaN,
infinite or outside [0, 1]; an observation with a class twice, ranks other than 1..n, probabilities that rise
with the rank or sum past 1. The checks are SQL over the table, so a SnakeCLEF store's 500k rows take well under
a second, plus a sha256 of head.pt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError, shell_word
from snakeweb.store import Store

META_KEY = "predictions"  # run metadata the predict stage records with its rows
SLACK = 1e-6  # float64 softmax and top-k round: a top-1 of 1.0000000000000002, or a sum a hair past 1, is not damage
EXAMPLES = 3

# (what is counted, what is wrong with them, SQL giving the offending values as `example`; `head_class_ids` is the
# label map of the head that made the rows, `embedded` the observations with an embedded photo)
ROW_CHECKS = (
    ("class id(s)", "in the rows are missing from the species table",
     "SELECT DISTINCT p.class_id AS example FROM predictions p WHERE p.class_id NOT IN (SELECT class_id FROM species)"),
    ("class id(s)", "in the rows are not in the head's label map",
     "SELECT DISTINCT p.class_id AS example FROM predictions p WHERE p.class_id NOT IN (SELECT class_id FROM head_class_ids)"),
    ("observation(s)", "in the rows have no embedded photo in the store (removed, or never embedded)",
     "SELECT DISTINCT p.observation_id AS example FROM predictions p WHERE p.observation_id NOT IN (SELECT observation_id FROM embedded)"),
    ("row(s)", "have a probability that is not a number from 0 to 1",
     f"SELECT p.observation_id || ' rank ' || p.rank || ': ' || p.probability AS example FROM predictions p "
     f"WHERE isnan(p.probability) OR isinf(p.probability) OR p.probability < 0 OR p.probability > 1 + {SLACK}"),
    ("observation(s)", "have rows that repeat a class or a rank, skip a rank, rise with the rank or sum past 1",
     f"SELECT observation_id AS example FROM (SELECT observation_id, class_id, rank, probability, "
     f"lag(probability) OVER (PARTITION BY observation_id ORDER BY rank) AS above FROM predictions) "
     f"GROUP BY observation_id HAVING count(*) <> count(DISTINCT class_id) OR count(*) <> count(DISTINCT rank) "
     f"OR min(rank) <> 1 OR max(rank) <> count(*) OR sum(probability) > 1 + {SLACK} "
     f"OR bool_or(probability > above + {SLACK})"),
)
MISSING = ("SELECT observation_id AS example FROM embedded WHERE observation_id NOT IN "
           "(SELECT observation_id FROM predictions)")
# the embed stage marks an image ok when its vector is written (check's `counts` verdict holds them to one another)
EMBEDDED = "SELECT DISTINCT observation_id FROM images WHERE status = 'ok'"


class StalePredictionsError(SnakewebError):
    """The stored predictions are not the current head's answers; the message names what is wrong and the fix."""


def predictions_record(store: Store, head, aggregation: str, observations: int) -> dict:
    """What the predict stage records beside its rows: which head.pt made them (its file id) and that head's class
    ids, so a reader can tell rows of the current head from rows of one trained or copied in since."""
    from snakeweb.provenance import file_id

    return {"aggregation": aggregation, "observations": observations, "head": head.kind,
            "head_id": file_id(store.head_path), "class_ids": head.label_map.to_json()}


def prediction_problems(store: Store) -> list[str]:
    """What makes the stored predictions unfit to read as the current head's answers, one clause each (empty when
    they are fit). Reads the table, the species table, the embedded observations and head.pt's sha256."""
    from snakeweb.provenance import file_id

    rows = int(store.query("SELECT count(*) AS n FROM predictions")["n"][0])
    recorded = store.get_meta(META_KEY) or {}
    problems = []
    if rows and not store.head_path.is_file():
        problems.append("there is no head.pt to have made them (run train first)")
    elif rows and recorded.get("head_id") is None:
        problems.append("they were made before snakeweb recorded which head made them")
    elif rows and recorded["head_id"] != file_id(store.head_path):
        problems.append(f"they were made by another head (id {recorded['head_id']}) than the store's head.pt "
                        f"(id {file_id(store.head_path)}), trained again or replaced since")
    class_ids = pd.DataFrame({"class_id": np.asarray(recorded.get("class_ids") or [], dtype=np.int64)})
    with store.connect(read_only=True) as con:
        con.register("head_class_ids", class_ids)
        con.execute(f"CREATE TEMP VIEW embedded AS {EMBEDDED}")
        for unit, what, sql in ROW_CHECKS:
            if "head_class_ids" in sql and recorded.get("class_ids") is None:
                continue  # rows of an unrecorded head are refused above, whatever their class ids
            found = con.execute(f"SELECT count(*), list(example ORDER BY example)[:{EXAMPLES}] FROM ({sql})").fetchone()
            if found[0]:
                problems.append(f"{found[0]} {unit} {what} (e.g. {', '.join(map(str, found[1]))})")
        missing = con.execute(f"SELECT count(*), list(example ORDER BY example)[:{EXAMPLES}] FROM ({MISSING})").fetchone()
    if missing[0]:
        problems.append(f"{missing[0]} observation(s) with embedded photos have no rows" + (
            f" (e.g. {', '.join(map(str, missing[1]))})" if rows else ": nothing was predicted yet"))
    return problems


def head_classes_missing(store: Store) -> list[int]:
    """The class ids of the predict stage's head (its recorded label map) that the species table lacks: rows of them
    come back at every predict, so the fix is the species table, not predict."""
    recorded = (store.get_meta(META_KEY) or {}).get("class_ids") or []
    species = set(store.query("SELECT class_id FROM species")["class_id"].tolist())
    return sorted(int(c) for c in recorded if int(c) not in species)


def species_gap_advice(store: Store, missing: list[int]) -> str:
    """What puts back class ids the head was trained on that the species table lacks (rows deleted from it)."""
    word = shell_word(store.root)
    return (f"the species table lacks class id(s) the head was trained on ({', '.join(map(str, missing[:EXAMPLES]))}"
            f"{', ...' if len(missing) > EXAMPLES else ''}; its rows were deleted): ingest the species table again with "
            f"`python -m pipelines ingest --store {word} --images DIR --species TABLE` (the photo folder, or --metadata "
            "and --image-root, and the species table the store was built with); predict and train cannot put them back")


def predictions_sentence(store: Store, problems: list[str]) -> str:
    """One sentence: the stored predictions cannot be used, why, and the command that makes them again (the species
    table's, when its missing rows are the cause: predict would write the same class ids again)."""
    missing = head_classes_missing(store)
    if missing:
        return f"The stored predictions of {store.root} cannot be used: {'; '.join(problems)}; {species_gap_advice(store, missing)}."
    return (f"The stored predictions of {store.root} cannot be used: {'; '.join(problems)}. Make them again with "
            f"`python -m pipelines predict --store {shell_word(store.root)}`.")


def require_predictions(store: Store) -> None:
    """Raises StalePredictionsError (one sentence naming `python -m pipelines predict`) unless the stored predictions
    are the current head's answers for the store's current observations (`prediction_problems`)."""
    problems = prediction_problems(store)
    if problems:
        raise StalePredictionsError(predictions_sentence(store, problems))
