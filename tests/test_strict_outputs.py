"""No silent wrong answers, output side: `--json` stdout is only JSON, arguments are checked by argparse,
exit codes are as documented, uploads are keyed by position, and unknown venom status shows as unknown."""

import io
import json
import os
import shutil
import stat
import subprocess
import sys

import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.identify import Identifier
from snakeweb.store import Store
from tests.conftest import REPO, build_photo_store


@pytest.fixture(scope="module")
def unknown_species_csv(tmp_path_factory):
    """The synthetic species with Zamenis longissimus left out: its folder gets a new id and unknown status."""
    path = tmp_path_factory.mktemp("species-partial") / "species.csv"
    path.write_text("class_id, binomial_name, MIVS\n1130, Natrix natrix, 0\n1740, Vipera berus, 1\n")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, unknown_species_csv) -> Store:
    root = tmp_path_factory.mktemp("strict-outputs") / "store"
    return Store(build_photo_store(root, tiny_model_dir, photo_folder, unknown_species_csv, "--skip-project"))


def test_a_species_no_table_knows_is_unknown_in_the_store_the_json_and_the_text(store, photo_folder, capsys):
    species = store.species().set_index("binomial_name")
    assert species["venom_status"].to_dict() == {"Natrix natrix": "harmless", "Vipera berus": "venomous", "Zamenis longissimus": "unknown"}
    assert species.loc["Zamenis longissimus", "class_id"] == 1741  # above the table, not another species' id
    photo = photo_folder / "Zamenis_longissimus" / "02.jpg"
    assert main(["identify", "--store", str(store.root), str(photo), "--json", "--neighbours", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    top = result["species"][0]
    assert top["binomial_name"] == "Zamenis longissimus" and top["venom_status"] == "unknown" and top["venomous"] is None
    assert "unknown venom status" in result["explanation"]
    assert main(["identify", "--store", str(store.root), str(photo), "--neighbours", "0"]) == 0
    out = capsys.readouterr().out
    assert "venom status UNKNOWN" in out and "harmless" not in out.split("\n")[1]
    from snakeweb.integrity import check_store

    verdict = {v.name: v for v in check_store(store)}["venom status"]
    assert verdict.ok and "1 venomous, 1 harmless, 1 unknown (treated as possibly venomous: Zamenis longissimus" in verdict.detail


def test_example_6_numeric_arguments_are_usage_sentences_not_tracebacks(store, photo_folder, capsys):
    photo = str(photo_folder / "Natrix_natrix" / "01.jpg")
    for args in (["--top-k", "0"], ["--top-k", "-3"], ["--top-k", "two"], ["--neighbours", "-1"], ["--uncertain-below", "1.5"],
                 ["--uncertain-below", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            main(["identify", "--store", str(store.root), photo, *args])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "usage:" in err and "Traceback" not in err, args
    for stage, args in (("embed", ["--batch-size", "0"]), ("train", ["--epochs", "0"]), ("train", ["--lr", "-1"]),
                        ("evaluate", ["--split", "tset"])):
        with pytest.raises(SystemExit) as exit_:
            main([stage, "--store", str(store.root), *args])
        assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err
    # --neighbours 0 is a fair request: no reference images
    assert main(["identify", "--store", str(store.root), photo, "--neighbours", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["neighbours"] == []


def test_an_empty_path_is_a_usage_sentence_and_writes_nothing_in_the_current_folder(store, photo_folder, tmp_path, capsys,
                                                                                   monkeypatch):
    # Path("") is the current folder: `--store "$UNSET"` built a whole store wherever the command ran, exit 0
    monkeypatch.chdir(tmp_path)
    photo = str(photo_folder / "Natrix_natrix" / "01.jpg")
    for args in (["build", "--store", "", "--images", str(photo_folder)], ["ingest", "--store", " ", "--images", str(photo_folder)],
                 ["export", "--store", str(store.root), "--out", ""], ["identify", "--store", str(store.root), ""],
                 ["identify", "--store", "", photo], ["export-embeddings", "--store", str(store.root), "--out", ""],
                 ["score", "--metadata", "", "--predictions", "p.csv", "--venomous", "v.csv"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "the path is empty" in err and "Traceback" not in err, args
    assert list(tmp_path.iterdir()) == []


def test_exit_codes_identify_0_when_any_observation_is_identified_2_when_none(store, photo_folder, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    good = str(photo_folder / "Natrix_natrix" / "01.jpg")
    assert main(["identify", "--store", str(store.root), good, str(bad), "--each", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "species" in lines[0] and "not an image" in lines[1]["error"]
    assert main(["identify", "--store", str(store.root), str(bad)]) == 2
    assert main(["identify", "--store", str(store.root), good, "--country", "DE"]) == 2  # no country table
    assert "--country-table" in capsys.readouterr().err


def test_photos_with_one_name_are_kept_apart_by_position(store, photo_folder):
    identifier = Identifier(store)
    good = (photo_folder / "Vipera_berus" / "01.jpg").read_bytes()
    result = identifier.identify([("image.jpg", good), ("image.jpg", b"broken"), ("image.jpg", good[:200])], neighbours=0)
    assert [(f.index, f.name) for f in result.failures] == [(1, "image.jpg"), (2, "image.jpg")]
    assert result.species[0].binomial_name == "Vipera berus"


def test_dashboard_uploads_with_one_file_name_each_get_their_own_warning(store, photo_folder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SNAKEWEB_STORE", str(store.root))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()  # an upper bound, not a speed check
    good = (photo_folder / "Vipera_berus" / "01.jpg").read_bytes()
    app.file_uploader[0].set_value([("image.jpg", good, "image/jpeg"), ("image.jpg", b"<html>", "image/jpeg"),
                                    ("image.jpg", good[:100], "image/jpeg")]).run()
    assert not app.exception
    warnings = [w.value for w in app.warning]
    assert any(w.startswith("Photo 2 (image.jpg) was skipped") for w in warnings)
    assert any(w.startswith("Photo 3 (image.jpg) was skipped") for w in warnings)
    assert app.table[0].value.index[0] == "Vipera berus"


def test_dashboard_shows_unknown_venom_status_as_unknown(store, photo_folder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SNAKEWEB_STORE", str(store.root))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()
    photo = (photo_folder / "Zamenis_longissimus" / "03.jpg").read_bytes()
    app.file_uploader[0].set_value([("z.jpg", photo, "image/jpeg")]).run()
    assert not app.exception
    # most of the probability is on a species nobody recorded a venom status for: a red "possibly venomous" banner
    # that names it (never green, never "harmless")
    banners = [b.value for b in (*app.error, *app.warning)]
    assert any("Venom status unknown" in b and "Zamenis longissimus" in b for b in banners)
    assert not app.success
    table = app.table[0].value
    assert "unknown" in table.loc["Zamenis longissimus", "venom status"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO, capture_output=True, text=True)


def test_example_5_json_lines_parse_with_pandas_even_with_a_chatty_library(tmp_path, photo_folder, species_csv):
    """The real case: EfficientNet-Lite0's package prints 'Loaded pretrained weights' when it loads."""
    store = tmp_path / "lite0"
    built = run_cli("build", "--store", str(store), "--images", str(photo_folder), "--species", str(species_csv),
                    "--model", "efficientnet-lite0-offline", "--skip-project", "--epochs", "3")
    assert built.returncode == 0, built.stderr[-2000:]
    photos = [str(photo_folder / "Natrix_natrix" / "01.jpg"), str(photo_folder / "Vipera_berus" / "02.jpg")]
    done = run_cli("identify", "--store", str(store), "--each", "--json", "--neighbours", "2", *photos)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = pd.read_json(io.StringIO(done.stdout), lines=True)
    assert len(lines) == 2 and lines["species"].map(len).tolist() == [3, 3]
    assert "Loaded pretrained weights" in done.stderr  # the library's line went to stderr, not lost
    scored = run_cli("evaluate", "--store", str(store), "--json")
    assert scored.returncode == 0 and json.loads(scored.stdout)["observations"] > 0


def test_json_mode_moves_prints_and_c_level_writes_to_stderr(tmp_path):
    """Any library, Python or C, that writes to stdout while `--json` runs: only the JSON stays on stdout."""
    script = (
        "import os, sys\n"
        "from pipelines import cli\n"
        "real = cli._run\n"
        "def noisy(args):\n"
        "    print('a library print')\n"
        "    os.write(1, b'a C library write\\n')\n"
        "    cli._emit('{\"ok\": true}')\n"
        "    return 0\n"
        "cli._run = noisy\n"
        "sys.exit(cli.main(['score', '--metadata', 'm', '--predictions', 'p', '--venomous', 'v', '--json']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == '{"ok": true}\n'
    assert "a library print" in done.stderr and "a C library write" in done.stderr


def test_bad_country_exits_2_before_any_model_loads(store, photo_folder):
    done = run_cli("identify", "--store", str(store.root), "--country", "ZZ", str(photo_folder / "Natrix_natrix" / "01.jpg"))
    assert done.returncode == 2 and "unknown country" in done.stderr and "Traceback" not in done.stderr


def test_a_country_prior_that_could_change_nothing_is_refused(store, tmp_path, capsys):
    table = tmp_path / "relevance.csv"
    table.write_text(";germany;italy\nNatrix natrix;1;1\nVipera berus;1;0\n")
    out = tmp_path / "submission.csv"
    code = main(["export", "--store", str(store.root), "--out", str(out), "--prior", "country", "--country-table", str(table)])
    assert code == 2 and "would change nothing" in capsys.readouterr().err and not out.exists()
    assert main(["evaluate", "--store", str(store.root), "--country-table", str(table)]) == 2


def test_a_store_that_cannot_tell_out_of_store_says_so_and_one_photo_twice_counts_once(store, photo_folder):
    identifier = Identifier(store)
    assert identifier.novelty is None  # 24 synthetic photos: too few validation photos for the threshold
    photo = (photo_folder / "Vipera_berus" / "01.jpg").read_bytes()
    result = identifier.identify([("a.jpg", photo), ("b.jpg", photo)], neighbours=0)
    assert result.out_of_store is None and any("cannot tell whether the photo shows a snake" in n for n in result.notes)
    assert [(f.index, f.reason) for f in result.failures] == [(1, "it is the same file as photo 1, which is counted once")]


def test_a_moved_country_table_leaves_identify_working_and_check_failing(tmp_path, tiny_model_dir, photo_folder, species_csv, capsys):
    table = tmp_path / "relevance.csv"
    table.write_text(";germany;italy\nNatrix natrix;1;1\nVipera berus;1;0\nZamenis longissimus;0;1\n")
    root = build_photo_store(tmp_path / "store", tiny_model_dir, photo_folder, species_csv, "--skip-project",
                             "--country-table", str(table))
    photo = str(photo_folder / "Vipera_berus" / "01.jpg")
    assert main(["identify", "--store", str(root), photo, "--country", "Italy", "--json"]) == 0
    capsys.readouterr()
    # a store of photo folders has no countries: evaluate scores without the recorded table's prior, and says so
    # (it refused, telling the user to leave out a table they never named)
    assert main(["evaluate", "--store", str(root), "--json"]) == 0
    done = capsys.readouterr()
    assert set(json.loads(done.out)["variants"]) == {"argmax/prior=none", "cost/prior=none"}
    assert "the species x country table recorded at build is not used here: None of the store's" in done.err
    assert main(["evaluate", "--store", str(root), "--country-table", str(table)]) == 2  # named: the user hears why
    capsys.readouterr()
    table.unlink()
    assert main(["identify", "--store", str(root), photo, "--json"]) == 0  # no country: the missing table is not needed
    assert json.loads(capsys.readouterr().out)["species"]
    assert main(["identify", "--store", str(root), photo, "--country", "Italy"]) == 2
    assert "recorded when the store was built" in capsys.readouterr().err
    assert main(["check", "--store", str(root)]) == 1
    assert "FAIL  country table" in capsys.readouterr().out


def test_export_takes_the_recorded_country_table_and_writes_a_readable_file(tmp_path, tiny_model_dir, photo_folder, species_csv):
    import stat

    metadata_root = tmp_path / "images"
    rows = ["observation_id,image_path,class_id,code"]
    for species, class_id in (("Natrix_natrix", 1130), ("Vipera_berus", 1740), ("Zamenis_longissimus", 7)):
        for i in range(8):
            target = metadata_root / species / f"{i:02d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((photo_folder / species / f"{i:02d}.jpg").read_bytes())
            rows.append(f"{species}{i},{species}/{i:02d}.jpg,{class_id},{'DE' if i % 2 else 'IT'}")
    metadata = tmp_path / "meta.csv"
    metadata.write_text("\n".join(rows) + "\n")
    table = tmp_path / "relevance.csv"
    table.write_text(";germany;italy\nNatrix natrix;1;1\nVipera berus;1;0\nZamenis longissimus;0;1\n")
    store = tmp_path / "store"
    assert main(["build", "--store", str(store), "--metadata", str(metadata), "--image-root", str(metadata_root), "--species",
                 str(species_csv), "--model", str(tiny_model_dir), "--skip-project", "--country-table", str(table)]) == 0
    out = tmp_path / "submission.csv"
    assert main(["export", "--store", str(store), "--out", str(out), "--prior", "country"]) == 0
    assert len(pd.read_csv(out)) == 24 and stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others, as any new file


def test_export_names_the_classes_snakeweb_numbered_itself(store, tmp_path, capsys):
    assert store.get_meta("assigned_class_ids") == [1741]  # Zamenis longissimus: no species table gave it an id
    out = tmp_path / "submission.csv"
    assert main(["export", "--store", str(store.root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "classes snakeweb numbered itself" in err and "Zamenis longissimus -> 1741" in err


def test_an_output_path_through_a_file_or_onto_a_folder_is_a_sentence(store, tmp_path, capsys):
    (tmp_path / "notes.csv").write_text("x\n")
    for command, out, said in (("export", tmp_path / "notes.csv" / "submission.csv", f"{tmp_path / 'notes.csv'} is a file, not a folder"),
                               ("export-embeddings", tmp_path, "it is a folder; give a file name"),
                               ("export", tmp_path, "it is a folder; give a file name")):
        assert main([command, "--store", str(store.root), "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert f"Cannot write {out}: {said}" in captured.err and "Traceback" not in captured.err, captured.err
        assert "predict" not in captured.out + captured.err  # said before the work (export predicted every observation first)
    assert (tmp_path / "notes.csv").read_text() == "x\n"
    # what is not a plain writable file is refused (run as root, an export replaced the device /dev/full with a file;
    # a pipe stands in for it here), a link is written through, not replaced
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "kept.csv").write_text("x\n")
    (tmp_path / "kept.csv").chmod(0o444)
    for out, said in ((tmp_path / "pipe", "it is not a regular file"), (tmp_path / "kept.csv", "the file is read-only")):
        assert main(["export-embeddings", "--store", str(store.root), "--out", str(out)]) == 2
        assert f"Cannot write {out}: {said}" in capsys.readouterr().err
    assert (tmp_path / "kept.csv").read_text() == "x\n" and stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)
    (tmp_path / "link.parquet").symlink_to(tmp_path / "real.parquet")
    assert main(["export-embeddings", "--store", str(store.root), "--out", str(tmp_path / "link.parquet")]) == 0
    assert (tmp_path / "link.parquet").is_symlink() and (tmp_path / "real.parquet").stat().st_size > 0
    capsys.readouterr()
    # a destination the system refuses is named as given (the error named the temporary file beside it)
    assert main(["export-embeddings", "--store", str(store.root), "--out", "/proc/vectors.parquet"]) == 2
    err = capsys.readouterr().err
    assert "Cannot write /proc/vectors.parquet: " in err and "/proc/.vectors" not in err, err
    # a store's own files: an export over one of them destroyed the store (once with exit 0)
    copy = Store(shutil.copytree(store.root, tmp_path / "store"))
    before = {name: (copy.root / name).read_bytes() for name in ("snakeweb.duckdb", "head.pt", "index.faiss")}
    for command, name in (("export", "snakeweb.duckdb"), ("export", "head.pt"), ("export-embeddings", "snakeweb.duckdb"),
                          ("export-embeddings", "index.faiss")):
        assert main([command, "--store", str(store.root), "--out", str(copy.root / name)]) == 2
        assert f"it is a store's own {name}, and writing there would destroy the store" in capsys.readouterr().err
    assert main(["export", "--store", str(copy.root), "--answers", "--out", str(copy.root / "head.pt")]) == 2
    assert {name: (copy.root / name).read_bytes() for name in before} == before


def test_an_empty_country_argument_means_no_country(store, photo_folder, capsys):
    photo = str(photo_folder / "Natrix_natrix" / "01.jpg")
    assert main(["identify", "--store", str(store.root), photo, "--country", "", "--json", "--neighbours", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["country"] is None


def test_metrics_page_shows_unknown_status_not_venomous(store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    assert main(["evaluate", "--store", str(store.root), "--split", "train"]) == 0
    monkeypatch.setenv("SNAKEWEB_STORE", str(store.root))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()
    app.switch_page("views/metrics.py").run()
    assert not app.exception
    assert any("venom status unknown" in w.value for w in app.warning)
    per_species = next(d.value for d in app.dataframe if "venom status" in getattr(d.value, "columns", []))
    assert per_species.set_index("binomial_name").loc["Zamenis longissimus", "venom status"] == "unknown"


def test_ctrl_c_says_work_is_kept_only_for_commands_that_keep_work(store, photo_folder, capsys, monkeypatch):
    import pipelines.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_identify", interrupted)
    monkeypatch.setattr(cli, "_stage", interrupted)
    assert main(["identify", "--store", str(store.root), str(photo_folder / "Natrix_natrix" / "01.jpg")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted."  # identify keeps nothing: it said "finished work is kept"
    assert main(["project", "--store", str(store.root)]) == 130
    assert "finished work is kept; run the same command again" in capsys.readouterr().err


def test_an_animation_or_multi_page_photo_says_only_its_first_frame_was_used(store, photo_folder, tmp_path, capsys):
    from PIL import Image

    snake = Image.open(photo_folder / "Natrix_natrix" / "01.jpg").convert("RGB")
    blank = Image.new("RGB", snake.size, (0, 0, 0))
    for name in ("moving.gif", "pages.tiff"):
        blank.save(tmp_path / name, save_all=True, append_images=[snake])
    plain = str(photo_folder / "Natrix_natrix" / "01.jpg")
    assert main(["identify", "--store", str(store.root), "--json", "--each", str(tmp_path / "moving.gif"), str(tmp_path / "pages.tiff"),
                 plain]) == 0
    notes = [json.loads(line)["notes"] for line in capsys.readouterr().out.splitlines()]
    assert any("has 2 frames (an animation or a multi-page file); only the first was used" in n for n in notes[0])
    assert any("pages.tiff) has 2 frames" in n for n in notes[1]) and not any("frames" in n for n in notes[2])


def test_a_photo_of_a_few_pixels_says_the_answer_from_it_says_little(store, photo_folder, tmp_path, capsys):
    # a 2 x 2 image was answered with no word about its size
    from PIL import Image

    snake = Image.open(photo_folder / "Natrix_natrix" / "01.jpg").convert("RGB")
    snake.resize((2, 2)).save(tmp_path / "tiny.png")
    snake.resize((40, 15)).save(tmp_path / "strip.png")
    assert main(["identify", "--store", str(store.root), "--json", "--each", str(tmp_path / "tiny.png"), str(tmp_path / "strip.png"),
                 str(photo_folder / "Natrix_natrix" / "01.jpg")]) == 0
    notes = [json.loads(line)["notes"] for line in capsys.readouterr().out.splitlines()]
    assert "Photo 1 (" in next(n for n in notes[0] if "is only 2 x 2 pixels, too small to show a snake's markings" in n)
    assert any("is only 40 x 15 pixels" in n for n in notes[1]) and not any("pixels" in n for n in notes[2])


def test_photos_that_name_two_species_are_said_to_disagree(store, photo_folder):
    """Photos of two snakes given as one animal were combined with no word (a rattlesnake and a grass snake made one
    "Crotalus atrox 34%"); photos of one species, or a photo the head is unsure of, say nothing."""
    identifier = Identifier(store)
    two = [(f"{n}.jpg", photo_folder / n / "04.jpg") for n in ("Natrix_natrix", "Vipera_berus")]
    result = identifier.identify(two, neighbours=0)
    said = [n for n in result.notes if n.startswith("The photos disagree")]
    assert len(said) == 1 and "photo 1 (Natrix_natrix.jpg) looks most like Natrix natrix" in said[0]
    assert "photo 2 (Vipera_berus.jpg) looks most like Vipera berus" in said[0] and "--each" in said[0]
    one = [(f"{i}.jpg", photo_folder / "Natrix_natrix" / f"0{i}.jpg") for i in (4, 5)]
    assert not [n for n in identifier.identify(one, neighbours=0).notes if n.startswith("The photos disagree")]
    import numpy as np

    unsure = np.log(np.array([[0.45, 0.3, 0.25], [0.2, 0.45, 0.35]]))  # neither photo names a species at 50%
    assert identifier.disagreement(unsure, ["a", "b"]) == []
    assert identifier.disagreement(np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])), ["a", "b"]) != []
    # a photo possibly venomous on its own, brought below the danger level by the others: said, even though no photo
    # names a species at 50% (Vipera berus is venomous, Zamenis longissimus of unknown status here: both possibly)
    k = len(identifier.taxa.names)
    viper = identifier.taxa.names.index("Vipera berus")
    natrix = identifier.taxa.names.index("Natrix natrix")
    alone = np.full((2, k), 1e-3)
    alone[0, viper], alone[0, natrix] = 0.45, 0.3
    alone[1, natrix] = 0.95
    alone /= alone.sum(axis=1, keepdims=True)
    combined = alone.mean(axis=0)
    notes = identifier.disagreement(np.log(alone), ["viper.jpg", "grass.jpg"], combined)
    assert any(n.startswith("On its own photo 1 (viper.jpg) is") and "possibly venomous, but" in n for n in notes)
    assert not any(n.startswith("On its own") for n in identifier.disagreement(np.log(alone[:1]), ["viper.jpg"], alone[0]))


def test_an_argument_error_with_json_is_json_on_stdout_too(store, photo_folder, capsys):
    """`identify --json --rank subspecies` printed nothing on stdout: a script read no line at all."""
    photo = str(photo_folder / "Natrix_natrix" / "01.jpg")
    with pytest.raises(SystemExit) as exit_:
        main(["identify", "--store", str(store.root), photo, "--json", "--rank", "subspecies"])
    captured = capsys.readouterr()
    refused = json.loads(captured.out)
    assert exit_.value.code == 2 and refused["inputs"] == [] and refused["failures"] == []
    assert refused["error"].startswith("argument --rank: invalid choice: 'subspecies'") and "invalid choice" in captured.err
    with pytest.raises(SystemExit):
        main(["score", "--json", "--metadata", "t.csv"])
    assert "the following arguments are required" in json.loads(capsys.readouterr().out)["error"]
