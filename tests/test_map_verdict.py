"""`build --skip-project` after photos were added: the map lacks their points. check fails a `map` verdict (not
`predictions`) that says to run the project stage, and that stage makes it pass."""

from __future__ import annotations

from pipelines.cli import main
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import build_photo_store, make_photo


def test_points_missing_from_the_map_fail_the_map_verdict_with_the_project_command(tmp_path, tiny_model_dir, photo_folder,
                                                                                   species_csv, capsys):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    root = build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv)
    make_photo(photos / "Natrix_natrix" / "new-1.jpg", (40, 160, 60), seed=101)
    make_photo(photos / "Vipera_berus" / "new-2.jpg", (170, 50, 40), seed=102)
    build_photo_store(root, tiny_model_dir, photos, species_csv, "--skip-project")
    verdicts = {v.name: v for v in check_store(Store(root))}
    assert verdicts["predictions"].ok, verdicts["predictions"].line()
    assert not verdicts["map"].ok and "24 of 26 embeddings on the map" in verdicts["map"].detail
    assert f"python -m pipelines project --store {root}" in verdicts["map"].detail
    assert main(["project", "--store", str(root)]) == 0
    capsys.readouterr()
    assert all(v.ok for v in check_store(Store(root)))
