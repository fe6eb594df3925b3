"""The quick commands stay quick: `--help` (top level and every command's), argument errors and `score` import
none of torch, transformers, faiss, umap (nor scikit-learn, Ray, Streamlit); `check` and `export` import no
transformers or umap (they load the head, saved with torch, and the FAISS index, so those two they need).

Each case runs in a fresh interpreter: the test process itself has imported torch long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED, build_photo_store

NEVER = ("torch", "transformers", "faiss", "umap")  # never for --help, argument errors and score
NOT_FOR_SCORE = ("sklearn", "ray", "streamlit")
NOT_FOR_STORE_COMMANDS = ("transformers", "umap")  # check and export: the head needs torch, the index faiss

# Runs `pipelines.cli.main` on each argument list given as JSON in argv[1], in one fresh process, and writes the
# exit codes and the top-level packages of sys.modules to argv[2] (stdout belongs to the commands).
PROBE = """
import argparse, json, sys
from pipelines.cli import _parser, main

runs = json.loads(sys.argv[1])
if runs == "every command's --help":
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    runs = [["--help"]] + [[command, "--help"] for command in commands]
codes = []
for argv in runs:
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
with open(sys.argv[2], "w") as out:
    json.dump({"runs": runs, "codes": codes, "modules": sorted({m.split(".")[0] for m in sys.modules})}, out)
"""


def probe(runs, tmp_path: Path) -> dict:
    """Run the argument lists in a fresh `python`; returns {"runs", "codes", "modules"}."""
    result = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(runs), str(result)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and result.is_file(), done.stderr
    return json.loads(result.read_text())


def imported(report: dict, packages: tuple[str, ...]) -> list[str]:
    return [p for p in packages if p in report["modules"]]


def test_help_of_every_command_imports_no_heavy_library(tmp_path):
    report = probe("every command's --help", tmp_path)
    assert len(report["runs"]) > 10 and ["score", "--help"] in report["runs"] and ["export", "--help"] in report["runs"]
    assert report["codes"] == [0] * len(report["runs"])
    assert imported(report, NEVER + NOT_FOR_SCORE) == []


def test_argument_errors_import_no_heavy_library(tmp_path):
    runs = [["no-such-command"], ["score", "--metadata", "truth.csv"], ["export", "--store", "s", "--out", "o", "--decision", "guess"],
            ["identify", "--store", "s", "photo.jpg", "--top-k", "0"], ["train", "--store", "s", "--head", "forest"],
            ["embed", "--store", "s", "--features", "pixels"], ["build", "--store", "s", "--lr", "-1"]]
    report = probe(runs, tmp_path)
    assert report["codes"] == [2] * len(runs)
    assert imported(report, NEVER + NOT_FOR_SCORE) == []


def _score_files(folder: Path) -> tuple[Path, Path, Path]:
    truth, submission, venomous = folder / "truth.csv", folder / "submission.csv", folder / "venomous.csv"
    truth.write_text("observation_id,class_id\n1,10\n1,10\n2,20\n3,30\n4,\n")
    submission.write_text("observation_id,class_id\n1,10\n2,30\n3,30\n4,10\n")
    venomous.write_text("class_id,MIVS\n10,0\n20,1\n30,0\n")
    return truth, submission, venomous


def test_score_imports_no_heavy_library(tmp_path):
    truth, submission, venomous = _score_files(tmp_path)
    runs = [["score", "--metadata", str(truth), "--predictions", str(submission), "--venomous", str(venomous)],
            ["score", "--metadata", str(truth), "--predictions", str(submission), "--venomous", str(venomous), "--json"],
            ["score", "--metadata", str(truth), "--predictions", str(truth), "--venomous", str(venomous)]]  # malformed: exit 2
    real = SHARED / "snakeclef" / "SnakeCLEF2023-ValMetadata.csv", SHARED / "reference" / "val_submission_example.csv"
    if all(p.is_file() for p in real):  # the SnakeCLEF validation file and a real submission of it, where present
        runs.append(["score", "--metadata", str(real[0]), "--predictions", str(real[1]),
                     "--venomous", str(SHARED / "snakeclef" / "venomous_status_list.csv")])
    report = probe(runs, tmp_path)
    assert report["codes"] == [0, 0, 2] + [0] * (len(runs) - 3)
    assert "pandas" in report["modules"]  # the probe sees what the commands imported
    assert imported(report, NEVER + NOT_FOR_SCORE) == []


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv) -> Path:
    return build_photo_store(tmp_path_factory.mktemp("cli-imports") / "store", tiny_model_dir, photo_folder, species_csv)


def test_check_and_export_load_no_model_library(store, tmp_path):
    runs = [["check", "--store", str(store)], ["export", "--store", str(store), "--out", str(tmp_path / "submission.csv")],
            ["export", "--store", str(store), "--out", str(tmp_path / "answers.jsonl"), "--answers"]]
    report = probe(runs, tmp_path)
    assert report["codes"] == [0, 0, 0]
    assert (tmp_path / "submission.csv").is_file() and (tmp_path / "answers.jsonl").is_file()
    assert "torch" in report["modules"]  # the head is a torch file: the probe sees it, and nothing else model-sized
    assert imported(report, NOT_FOR_STORE_COMMANDS + NOT_FOR_SCORE) == []
