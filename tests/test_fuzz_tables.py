"""Fuzzing the one table reader: hypothesis writes species tables, ground truth and raw bytes the way people
and spreadsheets do (headers with spaces and other case, `,` `;` tab, UTF-8 with and without BOM, Windows-1252,
UTF-16, empty and NA-like cells, floats as ids). The property: the right result, or one SnakewebError sentence;
never a traceback, never a venom status other than the one the file says. (Images: tests/test_image_geometry.py.)"""

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from snakeweb.errors import SnakewebError
from snakeweb.scoring import official_scores, read_submission, read_truth
from snakeweb.species import read_species_table
from snakeweb.tables import FALSE_WORDS, TRUE_WORDS, read_table

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADERS = {
    "class_id": ["class_id", "Class ID", " class_id ", "CLASSID", "class-id", "Class_Id"],
    "binomial_name": ["binomial_name", "Species", "scientific name", "Binomial Name", "name"],
    "venomous": ["MIVS", "venomous", "Venom Status", "is_venomous", " mivs"],
}
SPELLINGS = {
    "venomous": ["1", "1.0", "true", "TRUE", "yes", "Y", "venomous", "MIVS", "True"],
    "harmless": ["0", "0.0", "false", "FALSE", "No", "n", "harmless", "non-venomous"],
    "unknown": ["", "NA", "unknown", "?", "null", "N/A", "nan"],
}
ENCODINGS = ["utf-8", "utf-8-sig", "cp1252", "utf-16"]
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéü", min_size=1, max_size=8)


def write_table(rows: list[list[str]], delimiter: str, encoding: str, spaced: bool, newline: str) -> Path:
    joiner = delimiter + (" " if spaced else "")
    text = newline.join(joiner.join(row) for row in rows) + newline
    handle = tempfile.NamedTemporaryFile(suffix=".csv", delete=False)
    handle.write(text.encode(encoding))
    handle.close()
    return Path(handle.name)


@st.composite
def species_tables(draw):
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n, unique=True))
    statuses = draw(st.lists(st.sampled_from(list(SPELLINGS)), min_size=n, max_size=n))
    header = [draw(st.sampled_from(HEADERS[c])) for c in ("class_id", "binomial_name", "venomous")]
    rows = [header]
    for i, (class_id, status) in enumerate(zip(ids, statuses)):
        id_text = draw(st.sampled_from([str(class_id), f"{class_id}.0", f" {class_id} "]))
        genus = "Genus" + "abcdef"[i]  # a genus is letters: 'Genus0' is refused as no taxon name (tests/test_taxon_names.py)
        rows.append([id_text, draw(st.sampled_from([f"{genus} species", f"{genus.lower()}_species", f"{genus.upper()} SPECIES"])),
                     draw(st.sampled_from(SPELLINGS[status]))])
    fault = draw(st.sampled_from([None, None, "flag", "id", "empty id"]))
    if fault == "flag":
        word = draw(WORD.filter(lambda w: w not in TRUE_WORDS | FALSE_WORDS | {"na", "nan", "null", "none", "unknown"}))
        rows[draw(st.integers(1, n))][2] = word
    elif fault == "id":
        rows[draw(st.integers(1, n))][0] = draw(st.sampled_from(["12.5", "abc", "1e3", "#405", "4 05"]))
    elif fault == "empty id":
        rows[draw(st.integers(1, n))][0] = ""
    layout = (draw(st.sampled_from([",", ";", "\t"])), draw(st.sampled_from(ENCODINGS)), draw(st.booleans()),
              draw(st.sampled_from(["\n", "\r\n"])))
    return rows, dict(zip(ids, statuses)), fault, layout


@SETTINGS
@given(species_tables())
def test_species_tables_give_the_file_s_venom_status_or_one_sentence(case):
    rows, expected, fault, (delimiter, encoding, spaced, newline) = case
    path = write_table(rows, delimiter, encoding, spaced, newline)
    try:
        table = read_species_table([path])
    except SnakewebError as error:
        assert fault is not None, str(error)
        assert str(path) in str(error) and "\n" not in str(error)
        return
    finally:
        path.unlink()
    assert fault is None
    assert table.set_index("class_id")["venom_status"].to_dict() == expected


@st.composite
def truth_and_submission(draw):
    n = draw(st.integers(1, 8))
    truth_ids = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    labelled = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    right = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    truth_rows = [[draw(st.sampled_from(["observation_id", "Observation ID", "OBSERVATION_ID"])),
                   draw(st.sampled_from(["class_id", "Class ID", "classid"]))]]
    submission_rows = [["observation_id", "class_id"]]
    for i, (class_id, has_label, ok) in enumerate(zip(truth_ids, labelled, right)):
        label = draw(st.sampled_from([str(class_id), f"{class_id}.0"])) if has_label else draw(st.sampled_from(SPELLINGS["unknown"]))
        truth_rows.append([f"obs{i}", label])
        submission_rows.append([f"obs{i}", str(class_id if ok else class_id + 100)])
    scored = [ok for has_label, ok in zip(labelled, right) if has_label]
    layout = (draw(st.sampled_from([",", ";", "\t"])), draw(st.sampled_from(ENCODINGS)), draw(st.booleans()), "\n")
    return truth_rows, submission_rows, scored, layout


@SETTINGS
@given(truth_and_submission())
def test_ground_truth_with_empty_and_float_ids_scores_only_labelled_observations(case):
    truth_rows, submission_rows, scored, layout = case
    truth_path, submission_path = write_table(truth_rows, *layout), write_table(submission_rows, ",", "utf-8", False, "\n")
    try:
        truth = read_truth(truth_path)
        if not scored:
            try:
                official_scores(truth, read_submission(submission_path), set())
            except SnakewebError as error:
                assert "nothing to score" in str(error)
                return
            raise AssertionError("a ground truth without labels was scored")
        scores = official_scores(truth, read_submission(submission_path), set())
    finally:
        truth_path.unlink()
        submission_path.unlink()
    assert scores["Accuracy"] == round(100 * sum(scored) / len(scored), 2)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
@example(b"\xfe\xff\x00\x00\x00")  # a UTF-16 mark, then an odd byte count: was a UnicodeDecodeError traceback
@example(b"\xff\xfea\x00,\x00b")
def test_any_bytes_are_a_table_or_one_sentence(data):
    handle = tempfile.NamedTemporaryFile(suffix=".csv", delete=False)
    handle.write(data)
    handle.close()
    try:
        table = read_table(handle.name, "species table")
        assert isinstance(table.frame, pd.DataFrame) and len(table.lines) == len(table.frame)
    except SnakewebError as error:
        assert handle.name in str(error)
    finally:
        Path(handle.name).unlink()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab,;\t"\n\r 1.0NA')), max_size=120))
def test_any_delimited_text_is_a_species_table_or_one_sentence(text):
    handle = tempfile.NamedTemporaryFile(suffix=".csv", delete=False)
    handle.write(("class_id,binomial_name,MIVS\n" + text).encode())
    handle.close()
    try:
        table = read_species_table([handle.name])
        assert set(table["venom_status"]) <= {"venomous", "harmless", "unknown"}
    except SnakewebError:
        pass
    finally:
        Path(handle.name).unlink()
