"""What export and the answer paths do with the options a user gives: none is ignored in silence, the vote
aggregation never reaches a decision that reads probabilities, and `--out -` is stdout."""

import io

import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.errors import SnakewebError
from snakeweb.export import observation_answers
from snakeweb.identify import Identifier
from snakeweb.store import Store
from tests.conftest import build_photo_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv) -> Store:
    root = tmp_path_factory.mktemp("export-options") / "store"
    return Store(build_photo_store(root, tiny_model_dir, photo_folder, species_csv, "--skip-project"))


def test_the_vote_never_reaches_an_answer_or_a_probability_reader(store, photo_folder, tmp_path, capsys):
    """A single photo's vote is 100% for its top species: the venom rule and p(venomous) read it as a certainty (a
    photo the head gave 30% copperhead was exported as a certain harmless snake, p(venomous) 0)."""
    photo = str(photo_folder / "Natrix_natrix" / "01.jpg")
    s = str(store.root)
    for argv in (["identify", "--store", s, photo, "--aggregation", "mode"],
                 ["export", "--store", s, "--answers", "--out", str(tmp_path / "a.jsonl"), "--aggregation", "mode"],
                 ["export", "--store", s, "--decision", "cost", "--out", str(tmp_path / "c.csv"), "--aggregation", "mode"],
                 ["evaluate", "--store", s, "--aggregation", "mode"],
                 ["predict", "--store", s, "--aggregation", "mode"],
                 ["build", "--store", str(tmp_path / "new"), "--images", str(photo_folder), "--aggregation", "mode"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "vote shares, not probabilities" in err and "Traceback" not in err, argv
    assert not (tmp_path / "new").exists() and not (tmp_path / "a.jsonl").exists() and not (tmp_path / "c.csv").exists()
    with pytest.raises(SnakewebError, match="vote shares"):  # the library says it too, for the dashboard and scripts
        observation_answers(store, aggregation="mode")
    with pytest.raises(SnakewebError, match="vote shares"):
        Identifier(store).identify([("p", photo)], aggregation="mode")
    # the paper's vote still makes a submission by argmax, one row per observation
    vote, plain = tmp_path / "vote.csv", tmp_path / "plain.csv"
    assert main(["export", "--store", s, "--out", str(vote), "--aggregation", "mode"]) == 0
    assert main(["export", "--store", s, "--out", str(plain)]) == 0
    assert pd.read_csv(vote)["observation_id"].tolist() == pd.read_csv(plain)["observation_id"].tolist()


def test_an_option_export_would_not_read_is_said(store, tmp_path, capsys):
    s, out = str(store.root), str(tmp_path / "x.csv")
    for extra, said in ((["--rank", "genus"], "add --answers"), (["--range-mode", "filter"], "add --answers"),
                        (["--answers", "--decision", "cost"], "leave --decision out"),
                        (["--prior", "none", "--country-table", out], "read only with the country prior")):
        assert main(["export", "--store", s, "--out", out, *extra]) == 2, extra
        assert said in capsys.readouterr().err, extra
    # a table given without --prior is used: here it is read, and refused because photo folders carry no country
    table = tmp_path / "relevance.csv"
    table.write_text(";germany;italy\nNatrix natrix;1;1\nVipera berus;1;0\n")
    assert main(["export", "--store", s, "--out", out, "--country-table", str(table)]) == 2
    assert "country prior would change nothing" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_out_dash_is_stdout(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--store", str(store.root), "--out", "-"]) == 0
    captured = capsys.readouterr()
    submission = pd.read_csv(io.StringIO(captured.out))
    assert list(submission.columns) == ["observation_id", "class_id"] and len(submission) > 0
    assert "-> stdout" in captured.err and "export:" not in captured.out
    # the two observations whose photos could not be read are said, not left out in silence
    assert ("2 observation(s) are not in the submission (a SnakeCLEF scorer needs a row for each) because none of their photos "
            "could be read") in captured.err
    assert main(["export", "--store", str(store.root), "--out", "-", "--answers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(submission) + 2 and all(line.startswith('{"schema"') for line in lines)
    assert main(["export-embeddings", "--store", str(store.root), "--out", "-"]) == 2
    assert "not to stdout" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no file named "-"
