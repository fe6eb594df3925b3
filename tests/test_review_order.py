"""Which review decides an observation's label: the latest in reviewed_at, whatever order the review files were
imported in (at one time, the later import), and an imported review's old label is the label at its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.cli import main
from snakeweb.errors import SnakewebError
from snakeweb.review import add_review, import_reviews, reviewed_labels, reviews
from tests.test_strict_inputs import reviewable_stores, write

HEADER = "observation_id,reviewer,new_class_id,old_class_id,reviewed_at\n"
OBS = "Natrix natrix/0.jpg"  # ingested as Natrix natrix (1137); Crotalus atrox is 405


def _label(store) -> int:
    labels = reviewed_labels(store)
    return int(labels.loc[labels["observation_id"] == OBS, "class_id"].iloc[0])


def test_an_older_review_imported_later_is_not_the_current_label(tmp_path):
    (store,) = reviewable_stores(tmp_path, count=1)
    import_reviews(store, write(tmp_path / "new.csv", HEADER + f"{OBS},ana,405,1137,2025-06-01 10:00:00\n"))
    # made in 2024 on the ingested label: accepted (it was this store's label then), and it does not undo 2025's
    assert import_reviews(store, write(tmp_path / "old.csv", HEADER + f"{OBS},bo,1137,1137,2024-01-01 10:00:00\n"))["added"] == 1
    assert _label(store) == 405
    made = reviews(store).set_index("reviewer")
    assert made.loc["bo", "old_class_id"] == 1137 and made.loc["ana", "old_class_id"] == 1137
    add_review(store, OBS, "cy", 1137)  # the dashboard's review replaces the current label, 2025's
    assert reviews(store).set_index("reviewer").loc["cy", "old_class_id"] == 405 and _label(store) == 1137


def test_at_one_time_the_later_import_wins(tmp_path):
    (store,) = reviewable_stores(tmp_path, count=1)
    import_reviews(store, write(tmp_path / "a.csv", HEADER + f"{OBS},ana,405,,2025-06-01 10:00:00\n"))
    import_reviews(store, write(tmp_path / "b.csv", HEADER + f"{OBS},bo,1137,405,2025-06-01 10:00:00\n"))
    assert _label(store) == 1137


def test_a_review_dated_in_the_future_is_refused(tmp_path, capsys):
    (store,) = reviewable_stores(tmp_path, count=1)
    future = write(tmp_path / "f.csv", HEADER + f"{OBS},ana,405,1137,2099-01-01 10:00:00\n")
    with pytest.raises(SnakewebError, match="in the future"):
        import_reviews(store, future)
    assert main(["import-reviews", "--store", str(store.root), str(future)]) == 2
    assert "in the future" in capsys.readouterr().err and reviews(store).empty
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")  # a reviewer's clock a little ahead
    assert import_reviews(store, write(tmp_path / "s.csv", HEADER + f"{OBS},ana,405,1137,{soon}\n"))["added"] == 1


def test_a_review_without_a_time_is_not_added_twice(tmp_path, capsys):
    """A row without reviewed_at is stamped at import: imported twice it is still one review (it used to be two)."""
    (store,) = reviewable_stores(tmp_path, count=1)
    untimed = write(tmp_path / "u.csv", f"observation_id,reviewer,new_class_id\n{OBS},ann,405\n{OBS},ann,405\n")
    assert main(["import-reviews", "--store", str(store.root), str(untimed)]) == 0
    assert "1 review(s) added, 1 already in the store (1 without a reviewed_at" in capsys.readouterr().out
    assert main(["import-reviews", "--store", str(store.root), str(untimed)]) == 0
    assert "0 review(s) added, 2 already in the store (2 without a reviewed_at" in capsys.readouterr().out
    assert len(reviews(store)) == 1
    # another note, class or reviewer is another review; an empty reviewed_at cell is no time either
    other = write(tmp_path / "o.csv", f"observation_id,reviewer,new_class_id,note,reviewed_at\n{OBS},ann,405,,\n"
                  f"{OBS},ann,405,scales,\n{OBS},bo,405,,\n")
    assert import_reviews(store, other) == {"added": 2, "already_present": 1, "untimed_already_present": 1}
    assert import_reviews(store, write(tmp_path / "c.csv", f"observation_id,reviewer,new_class_id\n{OBS},ann,1137\n"))["added"] == 1
    # a timed row is matched by its time, as before: the same review at another time is added
    assert import_reviews(store, write(tmp_path / "t.csv", HEADER + f"{OBS},ann,405,,2025-06-01 10:00:00\n"))["added"] == 1
    assert len(reviews(store)) == 5
