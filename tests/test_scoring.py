import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.scoring import (
    OFFICIAL_KEYS,
    SubmissionError,
    confusion_table,
    official_scores,
    per_species_table,
    scores_of_arrays,
    venom_confusion,
)
from tests.conftest import REPO, shared

VENOMOUS = {10, 11}  # 1, 2, 3 harmless


def frame(pairs):
    return pd.DataFrame(pairs, columns=["observation_id", "class_id"])


def test_reference_submission_scores_exactly_as_the_official_code(capsys):
    args = ["score", "--metadata", str(shared("snakeclef", "SnakeCLEF2023-ValMetadata.csv")),
            "--predictions", str(shared("reference", "val_submission_example.csv")),
            "--venomous", str(shared("snakeclef", "venomous_status_list.csv")), "--json"]
    assert main(args) == 0
    scores = json.loads(capsys.readouterr().out)
    expected = json.loads(shared("reference", "val_submission_example_scores.json").read_text())
    assert list(scores) == list(OFFICIAL_KEYS)
    for key in OFFICIAL_KEYS:
        assert scores[key] == expected[key], key


def test_each_error_kind_and_the_rounding():
    truth = frame([("a", 1), ("b", 1), ("c", 2), ("d", 10), ("e", 10), ("f", 11), ("g", 3)])
    submission = frame([("a", 2), ("b", 10), ("c", 2), ("d", 1), ("e", 11), ("f", 11), ("g", 3)])
    scores = official_scores(truth, submission, VENOMOUS)
    # wrong: a harmless->harmless (c00), b harmless->venomous (c01), d venomous->harmless (c10), e venomous->other venomous (c11)
    assert scores["PSC_total"] == [1, 1, 1, 1]
    assert scores["PSC"] == [round(100 / 4, 2), 25.0, round(100 / 3, 2), 33.33]
    assert scores["Accuracy"] == round(100 * 3 / 7, 2) == 42.86
    assert scores["Track2 Metric"] == 1 + 2 + 5 + 2
    f1 = scores["F1 Score"]
    expected = round((f1 + 75 + 2 * 75 + 5 * (100 - 33.33) + 2 * (100 - 33.33)) / 11, 2)
    assert scores["Track1 Metric"] == expected


@pytest.mark.parametrize("wrong, total, official", [(23, 160, 14.37), (49, 160, 30.63), (109, 800, 13.63), (1, 3, 33.33)])
def test_percentages_round_at_ties_as_the_organisers_code(wrong, total, official):
    """Their np.round(wrong / total * 100, 2): round(100 * 23 / 160, 2) gave 14.38, one hundredth off, exit 0."""
    truth = frame([(f"o{i}", 10) for i in range(total)] + [("h", 1)])
    submission = frame([(f"o{i}", 1 if i < wrong else 10) for i in range(total)] + [("h", 1)])
    scores = official_scores(truth, submission, VENOMOUS)
    assert scores["PSC"][2] == official and scores["PSC_total"][2] == wrong


def test_an_unknown_species_in_the_truth_is_scored_as_the_organisers_score_it(tmp_path, capsys):
    """-1 (their open-set "unknown species"): a class for F1 and accuracy, an error when missed, but outside the
    venomous and harmless totals. The figures are those of their evaluate.py worked by hand."""
    truth, predictions, venomous = tmp_path / "gt.csv", tmp_path / "sub.csv", tmp_path / "v.csv"
    truth.write_text("observation_id,class_id\na,-1\nb,1\nc,10\n")
    predictions.write_text("observation_id,class_id\na,1\nb,1\nc,1\n")
    venomous.write_text("class_id,MIVS\n1,0\n10,1\n")
    assert main(["score", "--metadata", str(truth), "--predictions", str(predictions), "--venomous", str(venomous), "--json"]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    # harmless total 1 (b), venomous 1 (c): a (-1 -> 1) is a harmless->harmless error over a total that leaves it out
    assert scores["PSC_total"] == [1, 0, 1, 0] and scores["PSC"] == [100.0, 0.0, 100.0, 0.0]
    assert scores["Accuracy"] == 33.33 and scores["F1 Score"] == 16.67 and scores["Track2 Metric"] == 6
    assert scores["Track1 Metric"] == 37.88
    assert "1 ground-truth observation(s) are of unknown species" in captured.err and "not in the venomous list" not in captured.err
    truth.write_text("observation_id,class_id\na,-2\nb,1\nc,10\n")
    assert main(["score", "--metadata", str(truth), "--predictions", str(predictions), "--venomous", str(venomous)]) == 2
    assert "below -1" in capsys.readouterr().err


def test_digits_other_than_ascii_are_not_class_ids(tmp_path, capsys):
    """Python's int() reads '١٢' (Arabic-Indic) as 12; a table's class id is written in ASCII digits."""
    truth, predictions, venomous = tmp_path / "gt.csv", tmp_path / "sub.csv", tmp_path / "v.csv"
    truth.write_text("observation_id,class_id\na,12\n", encoding="utf-8")
    predictions.write_text("observation_id,class_id\na,\u0661\u0662\n", encoding="utf-8")
    venomous.write_text("class_id,MIVS\n12,0\n")
    assert main(["score", "--metadata", str(truth), "--predictions", str(predictions), "--venomous", str(venomous)]) == 2
    assert "not whole numbers" in capsys.readouterr().err


def test_truth_is_reduced_to_its_first_row_per_observation():
    truth = frame([("a", 1), ("a", 2), ("b", 10)])
    scores = official_scores(truth, frame([("a", 1), ("b", 10)]), VENOMOUS)
    assert scores["Accuracy"] == 100.0 and scores["PSC_total"] == [0, 0, 0, 0]


@pytest.mark.parametrize("submission, message", [
    (frame([("a", 1)]), "1 ground-truth observation(s) have no prediction, e.g. b"),
    (frame([("a", 1), ("b", 1), ("b", 2)]), "1 observation id(s) appear more than once"),
    (frame([("a", 1), ("b", 1), ("zz", 2)]), "1 submitted observation id(s) are not in the ground truth, e.g. zz"),
    (frame([("a", "cobra"), ("b", 1.5)]), "2 submission row(s) have a class_id that is not an integer"),
    (pd.DataFrame({"observation_id": ["a", "b"]}), "lacks column(s) ['class_id']"),
])
def test_malformed_submissions_are_named_not_merged(submission, message):
    with pytest.raises(SubmissionError) as error:
        official_scores(frame([("a", 1), ("b", 10)]), submission, VENOMOUS)
    assert message in str(error.value)


def test_score_cli_exits_2_with_a_sentence(tmp_path, capsys):
    truth, bad, venomous = tmp_path / "gt.csv", tmp_path / "sub.csv", tmp_path / "v.csv"
    frame([("a", 1), ("b", 10)]).to_csv(truth, index=False)
    frame([("a", 1)]).to_csv(bad, index=False)
    pd.DataFrame({"class_id": [10], "MIVS": [1]}).to_csv(venomous, index=False)
    assert main(["score", "--metadata", str(truth), "--predictions", str(bad), "--venomous", str(venomous)]) == 2
    err = capsys.readouterr().err
    assert "have no prediction" in err and "Traceback" not in err


def test_per_species_table_and_venom_confusion():
    truth = np.array([1, 1, 10, 10, 2])
    predicted = np.array([1, 10, 1, 10, 1])
    table = per_species_table(truth, predicted, VENOMOUS, {1: "A a", 10: "V v"}).set_index("class_id")
    assert table.loc[1, "support"] == 2 and table.loc[1, "precision"] == pytest.approx(1 / 3)
    assert table.loc[1, "recall"] == 0.5 and table.loc[1, "most_confused_with"] == 10
    assert table.loc[1, "share_c01"] == 1.0 and table.loc[10, "share_c10"] == 1.0
    assert table.loc[2, "f1"] == 0.0 and bool(table.loc[10, "venomous"])
    confusion = venom_confusion(truth, predicted, VENOMOUS)
    assert confusion == {"true_harmless": {"predicted_harmless": 2, "predicted_venomous": 1},
                         "true_venomous": {"predicted_harmless": 1, "predicted_venomous": 1}}


def test_venom_confusion_is_keyed_true_status_first_and_agrees_with_psc():
    """Lopsided on purpose (5 harmless called venomous, 1 venomous called harmless), so reading the record the wrong
    way round gives numbers PSC contradicts."""
    truth = np.array([1] * 10 + [10] * 4)
    predicted = np.array([11] * 5 + [2] * 2 + [1] * 3 + [1] + [11] * 2 + [10])
    confusion = venom_confusion(truth, predicted, VENOMOUS)
    scores = scores_of_arrays(truth, predicted, VENOMOUS)
    c00, c01, c10, c11 = scores["PSC_total"]
    assert (c01, c10) == (5, 1)
    assert confusion["true_harmless"]["predicted_venomous"] == c01 == 5  # harmless snakes called venomous
    assert confusion["true_venomous"]["predicted_harmless"] == c10 == 1  # venomous snakes called harmless
    harmless, venomous = sum(confusion["true_harmless"].values()), sum(confusion["true_venomous"].values())
    assert (harmless, venomous) == (10, 4)
    p00, p01, p10, p11 = scores["PSC"]  # shares of the true harmless / true venomous observations
    assert p01 == round(100 * confusion["true_harmless"]["predicted_venomous"] / harmless, 2) == 50.0
    assert p10 == round(100 * confusion["true_venomous"]["predicted_harmless"] / venomous, 2) == 25.0
    table = confusion_table(confusion)  # the Metrics page's table: rows truth, columns predicted
    assert (table.index.name, table.columns.name) == ("truth", "predicted")
    assert table.loc["harmless", "venomous"] == 5 and table.loc["venomous", "harmless"] == 1
    assert json.loads(json.dumps(confusion)) == confusion  # what evaluate --json prints


def test_macro_f1_is_scikit_learns_to_the_last_bit():
    """`score` computes macro F1 itself (importing sklearn.metrics took longer than the rest of the command); it must
    be the organisers' `f1_score(average="macro")` exactly, also for ids only in truth or only in prediction."""
    import warnings

    from sklearn.metrics import f1_score

    from snakeweb.scoring import macro_f1

    rng = np.random.default_rng(16)
    for _ in range(300):
        n, k = int(rng.integers(1, 500)), int(rng.integers(1, 80))
        truth = rng.integers(-2, k, n)
        predicted = np.where(rng.random(n) < rng.random(), truth, rng.integers(0, k + 5, n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns about classes never predicted
            expected = f1_score(truth, predicted, average="macro")
        assert macro_f1(truth, predicted) == expected


def test_every_real_submission_scores_as_recorded(capsys):
    """The 21 further real validation submissions in shared/data/reference/more, with the scores saved beside them."""
    folder = shared("reference", "more")
    submissions = sorted(folder.glob("*.csv"))
    assert len(submissions) >= 20
    for csv in submissions:
        assert main(["score", "--metadata", str(shared("snakeclef", "SnakeCLEF2023-ValMetadata.csv")), "--predictions", str(csv),
                     "--venomous", str(shared("snakeclef", "venomous_status_list.csv")), "--json"]) == 0
        scores = json.loads(capsys.readouterr().out)
        expected = json.loads(csv.with_suffix(".json").read_text())
        assert {k: scores[k] for k in OFFICIAL_KEYS} == {k: expected[k] for k in OFFICIAL_KEYS}, csv.name


def _score_process(args: list[str], stdin: bytes | None) -> subprocess.CompletedProcess:
    """`python -m pipelines score ARGS` in a fresh process, with `stdin` piped in (bytes) or the terminal's (None)."""
    return subprocess.run([sys.executable, "-m", "pipelines", "score", *args], cwd=REPO, input=stdin,
                          capture_output=True, timeout=300)


def test_a_real_submission_piped_to_predictions_dash_scores_as_its_file():
    """`--predictions -` reads the submission from standard input through the one table reader: the same scores as
    the file, to the last digit, and the official reference scores."""
    truth, venomous = shared("snakeclef", "SnakeCLEF2023-ValMetadata.csv"), shared("snakeclef", "venomous_status_list.csv")
    submission = shared("reference", "val_submission_example.csv")
    args = ["--metadata", str(truth), "--venomous", str(venomous), "--json"]
    piped = _score_process([*args, "--predictions", "-"], submission.read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    from_file = _score_process([*args, "--predictions", str(submission)], None)
    assert json.loads(piped.stdout) == json.loads(from_file.stdout)
    expected = json.loads(shared("reference", "val_submission_example_scores.json").read_text())
    assert {k: json.loads(piped.stdout)[k] for k in OFFICIAL_KEYS} == {k: expected[k] for k in OFFICIAL_KEYS}


def test_a_piped_submission_keeps_every_check_of_the_reader(tmp_path):
    """Standard input is read by the same rules as a file (Excel's `;` and BOM accepted, a bad class id refused
    naming "standard input" and the line), and the refusals are one sentence with exit 2."""
    truth, venomous = tmp_path / "truth.csv", tmp_path / "venomous.csv"
    truth.write_text("observation_id,class_id\n1,10\n2,2\n3,3\n")
    venomous.write_text("class_id,MIVS\n10,1\n2,0\n3,0\n")
    args = ["--metadata", str(truth), "--venomous", str(venomous), "--json"]
    excel = _score_process([*args, "--predictions", "-"], "\ufeffobservation_id;class_id\r\n1;10\r\n2;3\r\n3;3\r\n".encode())
    assert excel.returncode == 0 and json.loads(excel.stdout)["Accuracy"] == 66.67
    bad = _score_process([*args, "--predictions", "-"], b"observation_id,class_id\n1,10\n2,two\n3,3\n")
    err = bad.stderr.decode()
    assert bad.returncode == 2 and "(standard input)" in err and "line 3" in err and "Traceback" not in err
    assert bad.stdout.strip().startswith(b"{")  # --json: the refusal is JSON on stdout too
    empty = _score_process([*args, "--predictions", "-"], b"")
    assert empty.returncode == 2 and "The submission (standard input) is empty." in empty.stderr.decode()
    both = _score_process(["--metadata", "-", "--predictions", "-", "--venomous", str(venomous)], b"observation_id,class_id\n1,10\n")
    assert both.returncode == 2 and "--metadata and --predictions both read standard input" in both.stderr.decode()
    truth_piped = _score_process(["--metadata", "-", "--predictions", str(truth), "--venomous", str(venomous), "--json"],
                                 truth.read_bytes())
    assert truth_piped.returncode == 0 and json.loads(truth_piped.stdout)["Accuracy"] == 100.0


@pytest.mark.parametrize("argv", [["ingest", "--store", "s", "--species", "-"], ["ingest", "--store", "-", "--images", "p"],
                                  ["evaluate", "--store", "s", "--country-table", "-"], ["identify", "--store", "s", "-"],
                                  ["import-embeddings", "--store", "s", "--parquet", "-", "--model", "dinov2-small"]])
def test_inputs_that_cannot_read_standard_input_refuse_dash_with_a_sentence(argv, capsys):
    """Options whose file is read again later or recorded (a country table), folders, photos and Parquet do not take
    `-`: refused by argparse naming the ones that do, never read as a file called '-'."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "'-' (standard input) is read only by score's --metadata, --predictions and --venomous" in capsys.readouterr().err


def test_json_lines_gzip_and_binary_on_standard_input_are_said_early(tmp_path):
    """`export --answers --out - | score --predictions -` is JSON lines: said so, not its keys as column names; a gzip
    stream is said to be compressed; `< /dev/zero` is refused from its first bytes instead of never ending."""
    import gzip

    truth, venomous = tmp_path / "truth.csv", tmp_path / "venomous.csv"
    truth.write_text("observation_id,class_id\n1,10\n")
    venomous.write_text("class_id,MIVS\n10,1\n")
    args = ["--metadata", str(truth), "--venomous", str(venomous), "--predictions", "-"]
    answers = b'{"schema": "snakeweb.answer/3", "observation_id": "1", "species": [{"class_id": 10}]}\n' * 3
    said = _score_process(args, answers)
    err = said.stderr.decode()
    assert said.returncode == 2 and "is JSON lines" in err and "without --answers" in err and "schema" not in err
    packed = _score_process(args, gzip.compress(b"observation_id,class_id\n1,10\n"))
    assert packed.returncode == 2 and "is gzip-compressed; decompress it" in packed.stderr.decode()
    with open("/dev/zero", "rb") as zeros:
        endless = subprocess.run([sys.executable, "-m", "pipelines", "score", *args], cwd=REPO, stdin=zeros,
                                 capture_output=True, timeout=120)
    assert endless.returncode == 2 and "holds binary data" in endless.stderr.decode()
    photo = tmp_path / "big.bin"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n\x00" + bytes(1 << 20))
    refused = _score_process([*args[:-1], str(photo)], None)
    assert refused.returncode == 2 and "holds binary data" in refused.stderr.decode()
