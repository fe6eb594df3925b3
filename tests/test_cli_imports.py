"""The quick commands stay quick: `--help` (top level and every command's), argument errors and `score` import
none of torch, transformers, faiss, umap (nor scikit-learn, Ray, Streamlit); `check` and `export` on a real store
import none of torch, transformers, faiss, umap either: the head is NumPy arrays (safetensors), the index file is
read and, when exact, searched with NumPy (snakeweb.vectors). Only a head saved by an earlier snakeweb (a torch
file) brings torch in, to read it.

Each case runs in a fresh interpreter: the test process itself has imported torch long ago.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snakeweb import stages
from tests.conftest import REPO, SHARED, build_photo_store

NEVER = ("torch", "transformers", "faiss", "umap")  # never for --help, argument errors and score
NOT_FOR_SCORE = ("sklearn", "ray", "streamlit")

# Runs `pipelines.cli.main` on each argument list given as JSON in argv[1], in one fresh process, and writes the
# exit codes and the top-level packages of sys.modules to argv[2] (stdout belongs to the commands).
PROBE = """
import argparse, json, sys
from pipelines.arguments import parser
from pipelines.cli import main

runs = json.loads(sys.argv[1])
if runs == "every command's --help":
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
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
    """Run the argument lists in a fresh `python`; returns {"runs", "codes", "modules", "stdout"}."""
    result = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(runs), str(result)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and result.is_file(), done.stderr
    return json.loads(result.read_text()) | {"stdout": done.stdout}


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


def test_a_missing_store_country_or_photo_folder_is_refused_before_loading_any_model(tmp_path):
    runs = [["identify", "--store", str(tmp_path / "no-store"), "photo.jpg"],
            ["identify", "--store", str(tmp_path / "no-store"), "--country", "XX", "photo.jpg"],
            ["build", "--store", str(tmp_path / "new-store"), "--images", str(tmp_path / "no-photos")],
            # an unknown model: said before torch is imported and before the store is made (it took 3.4 s)
            ["build", "--store", str(tmp_path / "new-store"), "--images", str(SHARED / "images"), "--model", "dinov2-tiny"],
            ["embed", "--store", str(tmp_path / "new-store"), "--model", "concat:efficientnet-lite0-offline+lite9"]]
    report = probe(runs, tmp_path)
    assert report["codes"] == [2] * len(runs)
    assert not (tmp_path / "new-store").exists()
    assert imported(report, NEVER) == []


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


def store_commands(store: Path, out: Path) -> list[list[str]]:
    return [["check", "--store", str(store)], ["export", "--store", str(store), "--out", str(out / "submission.csv")],
            ["export", "--store", str(store), "--out", str(out / "answers.jsonl"), "--answers"]]


def test_check_and_export_load_no_model_library(store, tmp_path):
    report = probe(store_commands(store, tmp_path), tmp_path)
    assert report["codes"] == [0, 0, 0]
    assert (tmp_path / "submission.csv").is_file() and (tmp_path / "answers.jsonl").is_file()
    assert "numpy" in report["modules"] and "duckdb" in report["modules"]  # the probe sees what the commands imported
    assert imported(report, NEVER + NOT_FOR_SCORE) == []


def test_export_searches_the_index_with_numpy_as_faiss_would(store, tmp_path, monkeypatch):
    """A head that votes with the index (linear+kNN blended) and a novelty threshold: export reads and searches the
    exact index in NumPy, without FAISS, and writes what the same export searching with FAISS writes."""
    import shutil

    from snakeweb import vectors
    from snakeweb.export import export_answers, export_submission
    from snakeweb.heads import Head
    from snakeweb.index import load_index
    from snakeweb.store import Store, set_meta

    root = tmp_path / "store"
    shutil.copytree(store, root)
    blended = Store(root)
    head = Head.load(blended.head_path)
    head.blend_weight = 0.5
    head.save(blended.head_path)
    ids, x = blended.embeddings()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    train = (blended.query("SELECT split FROM images WHERE status = 'ok' ORDER BY image_id")["split"] == "train").to_numpy()
    nearest = np.sort(np.sort(x @ x[train].T, axis=1)[:, -2])  # (one photo per observation: the best is itself or another)
    middle = len(nearest) // 4 + int(np.argmax(np.diff(nearest[len(nearest) // 4:3 * len(nearest) // 4])))
    with blended.transaction() as con:  # a threshold in the widest gap mid-way: about half the photos out of store, no near-ties
        set_meta(con, "novelty", {"similarity_threshold": float(nearest[middle:middle + 2].mean())})
    stages.predict(blended)  # the stored predictions follow the changed head (check fails rows another head made)
    report = probe(store_commands(root, tmp_path), tmp_path)
    assert report["codes"] == [0, 0, 0] and imported(report, NEVER + NOT_FOR_SCORE) == []
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert {a["out_of_store"] for a in answers} == {True, False, None}  # the search ran and told some apart (None: abstained)

    numpy_index = vectors.open_index(blended.index_path)
    assert isinstance(numpy_index, vectors.FlatIndex)  # exact: searched in NumPy
    monkeypatch.setattr(vectors, "open_index", lambda path, batch_search=False: load_index(path))  # FAISS's search
    expected = export_submission(blended, None)
    assert (tmp_path / "submission.csv").read_text() == expected.to_csv(index=False)
    with_faiss = export_answers(blended, tmp_path / "faiss-answers.jsonl")
    assert len(answers) == len(with_faiss)
    # FAISS and NumPy sum similarities in different orders: where two neighbours tie to the last bits at the kNN
    # vote's edge, each may take another one, and the vote differs (a CI run once differed). Such photos are
    # found by searching both ways; every other answer must be the same.
    ids, x = blended.embeddings()
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    k = head.config.knn_k + 1
    tied = set(ids[np.any(numpy_index.search(x, k)[1] != load_index(blended.index_path).search(x, k)[1], axis=1)].tolist())
    tied_observations = set(blended.query("SELECT observation_id, image_id FROM images").set_index("image_id")
                            .loc[sorted(tied), "observation_id"]) if tied else set()
    for ours, theirs in zip(answers, with_faiss):  # a failure shows the fields that differ
        differ = {k: (ours.get(k), theirs.get(k)) for k in ours.keys() | theirs.keys()
                  if not same_up_to_float_rounding(ours.get(k), theirs.get(k))}
        assert not differ or ours["observation_id"] in tied_observations, (ours["observation_id"], differ)
    assert len(tied_observations) < len(answers) // 4  # ties are rare: the comparison still covers most answers


def same_up_to_float_rounding(a, b) -> bool:
    """Equal, except that floats may differ in their last bits: FAISS and NumPy sum the similarities in different
    orders (BLAS blocking, thread counts set by earlier tests), and the kNN vote's probabilities follow them."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_up_to_float_rounding(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_up_to_float_rounding(x, y) for x, y in zip(a, b))
    return a == b


def test_check_still_fails_a_missing_damaged_or_stale_index_without_faiss(store, tmp_path):
    import shutil

    from snakeweb.index import build_index, save_index
    from snakeweb.store import Store

    ids, vectors = Store(store).embeddings()
    stores = {}
    for case in ("missing", "truncated", "other ids", "other dimension", "not an index"):
        root = stores[case] = tmp_path / case.replace(" ", "-")
        shutil.copytree(store, root)
        index_file = Store(root).index_path
        if case == "missing":
            index_file.unlink()
        elif case == "truncated":
            index_file.write_bytes(index_file.read_bytes()[:-12])
        elif case == "other ids":
            save_index(build_index(ids + 1000, vectors), index_file)
        elif case == "other dimension":
            save_index(build_index(ids, vectors[:, :-2]), index_file)
        else:
            index_file.write_text("a file that is not a FAISS index, though as long as an index header would be\n" * 3)
    report = probe([["check", "--store", str(root)] for root in stores.values()], tmp_path)
    assert report["codes"] == [1] * len(stores) and imported(report, NEVER + NOT_FOR_SCORE) == []
    verdicts = [line for line in report["stdout"].splitlines() if "index:" in line]
    assert len(verdicts) == len(stores) and all(line.startswith("FAIL") for line in verdicts), verdicts
    assert "missing" in verdicts[0] and "truncated" in verdicts[1] and "not a snakeweb index" in verdicts[4]
    assert "DIFFERENT" in verdicts[2] and "dim 46, but the store's embeddings are 48-d" in verdicts[3]


def test_a_head_saved_with_torch_by_an_earlier_version_still_checks_and_exports(store, tmp_path):
    """Stores trained before heads were NumPy files keep working: such a head is read with torch (only then)."""
    import shutil
    from dataclasses import asdict

    import torch

    from snakeweb.heads import Head
    from snakeweb.store import Store

    root = tmp_path / "store"
    shutil.copytree(store, root)
    head = Head.load(Store(root).head_path)
    (weight, bias), = head.layers
    torch.save({"format": 2, "kind": head.kind, "class_ids": head.label_map.to_json(), "feature_kind": head.feature_kind,
                "model_fingerprint": head.model_fingerprint, "feature_dim": head.feature_dim, "config": asdict(head.config),
                "history": head.history, "state_dict": {"weight": torch.from_numpy(weight), "bias": torch.from_numpy(bias)},
                "reference_ids": head.reference_ids, "reference_labels": head.reference_labels, "temperature": head.temperature,
                "logit_offset": head.logit_offset, "blend_weight": head.blend_weight, "venom_weight": head.venom_weight,
                "thresholds": head.thresholds}, Store(root).head_path)
    stages.predict(Store(root))  # predictions made by this head.pt file (check fails rows another head file made)
    report = probe(store_commands(root, tmp_path), tmp_path)
    assert report["codes"] == [0, 0, 0] and "earlier torch format" in report["stdout"]
    assert imported(report, ("transformers", "faiss", "umap")) == []
    (tmp_path / "new").mkdir()
    assert probe(store_commands(store, tmp_path / "new"), tmp_path)["codes"] == [0, 0, 0]  # the same head, saved as NumPy
    assert (tmp_path / "submission.csv").read_text() == (tmp_path / "new" / "submission.csv").read_text()


def test_check_verifies_the_default_models_packaged_weights_without_torch():
    # the stores of the tests above use a tiny DINOv2 folder; `check` on a store of the default offline model
    # imported torch through the EfficientNet model package, only to find its weights file
    code = """
import json, sys
from dataclasses import asdict
from snakeweb.integrity import _packaged_weights
from snakeweb.models import AUTO_OFFLINE_MODEL, resolve_model
config = resolve_model(AUTO_OFFLINE_MODEL)
verdict = _packaged_weights("concat(nothing recorded)", asdict(config))
print(json.dumps({"ok": verdict.ok, "detail": verdict.detail, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout.splitlines()[-1])
    assert not report["ok"] and "have CHANGED" in report["detail"]  # the weights were found and hashed
    assert imported(report, NEVER) == []


def test_concat_of_one_model_twice_is_refused_before_torch(tmp_path, tiny_model_dir):
    """concat: of a model with itself doubles the vector with nothing new: refused (exit 2, one sentence) before torch
    is imported and before the store is made, under one spelling, two spellings of one folder, or a copy of the folder
    under another name; so are an empty part (a trailing or doubled '+') and auto as a part."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)  # a usable model folder: the refusal is for naming it twice
    shutil.copytree(tiny_model_dir, tmp_path / "copy")
    (tmp_path / "link").symlink_to(folder)
    store = str(tmp_path / "new-store")
    twice = ["concat:efficientnet-lite0-offline+efficientnet-lite1-offline+efficientnet-lite0-offline",
             f"concat:{folder}+{tmp_path / 'link'}/", f"concat:{folder}+{tmp_path / 'copy'}", "concat:auto+auto",
             f"concat:auto+{folder}+{folder}/.", "concat:auto+efficientnet-lite0-offline", "concat:efficientnet-lite0-offline+",
             "concat:efficientnet-lite0-offline++efficientnet-lite1-offline"]
    runs = [["embed", "--store", store, "--model", model] for model in twice]
    runs.append(["import-embeddings", "--store", store, "--parquet", str(tmp_path / "v.parquet"), "--model", twice[0]])
    report = probe(runs, tmp_path)
    assert report["codes"] == [2] * len(runs)
    assert not (tmp_path / "new-store").exists()
    assert imported(report, NEVER) == []


def test_concat_twice_names_the_model_and_different_models_still_join(tmp_path, capsys, tiny_model_dir):
    from pipelines.cli import main
    from snakeweb.errors import SnakewebError
    from snakeweb.models import resolve_model

    with pytest.raises(SnakewebError, match="names 'efficientnet-lite2-offline' twice: joining a model with itself"):
        resolve_model("concat:efficientnet-lite2-offline+efficientnet-lite2-offline")
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    with pytest.raises(SnakewebError, match=r"one model twice, as '\S+model' and '\S+model/\.'"):
        resolve_model(f"concat:{folder}+{folder}/.")
    joined = resolve_model("concat:efficientnet-lite0-offline+efficientnet-lite2-offline")
    assert joined.location == "efficientnet-lite0-offline+efficientnet-lite2-offline"
    shutil.copytree(tiny_model_dir, tmp_path / "copy")  # the same files under another folder name: the same model
    with pytest.raises(SnakewebError, match=r"one model twice, as '\S+model' and '\S+copy' \(two folders holding the same files\)"):
        resolve_model(f"concat:{folder}+{tmp_path / 'copy'}")
    for model in ("concat:auto+auto", "concat:auto+efficientnet-lite0-offline"):
        assert main(["embed", "--store", str(tmp_path / "s"), "--model", model]) == 2
        err = capsys.readouterr().err
        assert "has auto as a part, but auto is itself a model chosen at run time" in err and "name the models" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    for model in ("concat:efficientnet-lite0-offline+", "concat:+efficientnet-lite0-offline",
                  "concat:efficientnet-lite0-offline++efficientnet-lite1-offline"):
        assert main(["build", "--store", str(tmp_path / "s"), "--images", str(tmp_path), "--model", model]) == 2
        err = capsys.readouterr().err
        assert "has an empty part (a '+' at the start or end, or two together)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
