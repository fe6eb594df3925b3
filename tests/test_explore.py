"""The Explore map's data and selections on a SnakeCLEF-shaped store (1,784 species, 1% of the images)."""

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.explore_scale import make_explore_store
from snakeweb.explore import PALETTE, inside_polygon, map_points, selection_counts, selection_images


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_explore_store(tmp_path_factory.mktemp("explore"), scale=0.01)


@pytest.fixture(scope="module")
def points(store):
    return map_points(store)


def test_every_point_with_its_species_genus_venom_and_outcome(store, points):
    truth = store.query(
        "SELECT p.image_id, p.x, s.binomial_name, s.genus, s.venom_status, "
        "CASE WHEN pr.class_id = i.class_id THEN 'correct' ELSE 'incorrect' END AS prediction "
        "FROM projection p JOIN images i USING (image_id) JOIN species s USING (class_id) "
        "LEFT JOIN predictions pr ON pr.observation_id = i.observation_id AND pr.rank = 1 ORDER BY p.image_id"
    )
    assert len(points) == points.total == len(truth)  # nothing sampled
    assert np.array_equal(points.image_id, truth["image_id"].to_numpy())
    assert np.allclose(points.x, truth["x"].to_numpy(), atol=1e-5)
    for colouring, column in [("species", "binomial_name"), ("genus", "genus"), ("venom_status", "venom_status"),
                              ("prediction", "prediction")]:
        names = np.asarray(points.categories[colouring], dtype=object)[points.codes[colouring]]
        assert (names == truth[column].to_numpy()).all(), colouring
    assert len(points.colours["species"]) == len(points.categories["species"])


def test_neighbouring_species_get_different_colours(points):
    from scipy.spatial import cKDTree

    codes, colours = points.codes["species"], np.asarray(points.colours["species"])
    sizes = np.bincount(codes)
    centres = np.c_[np.bincount(codes, points.x), np.bincount(codes, points.y)] / sizes[:, None]
    assert len(centres) > len(PALETTE)  # colours must repeat somewhere
    _, near = cKDTree(centres).query(centres, k=7)
    assert (colours[near[:, 1:]] != colours[near[:, :1]]).all()  # never among a species' 6 nearest


def test_a_store_beyond_the_limit_is_thinned_and_says_so(store):
    thinned = map_points(store, max_points=100)
    assert len(thinned) == 100 and thinned.total > 100
    assert np.all(np.diff(thinned.image_id) > 0)


def test_selection_counts_and_images(store, points):
    chosen = np.flatnonzero(points.codes["species"] == points.codes["species"][0])[:5]
    counts = selection_counts(points, chosen)
    assert counts["images"].tolist() == [len(chosen)] and counts["species"][0] == points.categories["species"][points.codes["species"][0]]
    images = selection_images(store, points.image_id[chosen][::-1])
    assert images["image_id"].tolist() == points.image_id[chosen][::-1].tolist()  # in the order asked
    assert {"path", "binomial_name", "venom_status"} <= set(images.columns)


def test_inside_polygon_even_odd():
    x, y = np.array([1.0, 3.0, 5.0, 3.0, 9.0]), np.array([1.0, 3.0, 1.0, 1.5, 9.0])
    square = np.array([0.0, 4.0, 4.0, 0.0]), np.array([0.0, 0.0, 4.0, 4.0])
    assert inside_polygon(x, y, *square).tolist() == [True, True, False, True, False]
    notch = np.array([0.0, 6.0, 6.0, 3.0, 0.0]), np.array([0.0, 0.0, 4.0, 1.0, 4.0])  # a V cut into the top
    assert inside_polygon(x, y, *notch).tolist() == [True, False, True, False, False]


def test_box_lasso_and_click_selections_map_back_to_points(points):
    from views.explore_map import map_figure, selected_positions

    drawn = map_figure(points, "species")
    assert sum(len(trace.x) for trace in drawn.figure.data) == len(points)  # every point, once
    assert len(drawn.figure.data) <= len(PALETTE) + 1  # a trace per colour, not per species
    box = {"x": [20000, 40000], "y": [40000, 20000]}  # a region's outline alone (no points named): read from it
    inside = selected_positions(SimpleNamespace(selection={"box": [box], "lasso": [], "points": []}), drawn)
    expected = np.flatnonzero((drawn.x >= 20000) & (drawn.x <= 40000) & (drawn.y >= 20000) & (drawn.y <= 40000))
    assert len(inside) > 0 and np.array_equal(inside, expected)
    lasso = {"x": [20000, 40000, 40000, 20000], "y": [20000, 20000, 40000, 40000]}
    assert np.array_equal(selected_positions(SimpleNamespace(selection={"box": [], "lasso": [lasso]}), drawn), expected)
    # a click names (trace, index in the trace): the point drawn there
    trace = 3
    clicked = {"curve_number": trace, "point_index": 7}
    position = selected_positions(SimpleNamespace(selection={"points": [clicked]}), drawn)
    assert len(position) == 1
    assert drawn.x[position[0]] == drawn.figure.data[trace].x[7] and drawn.y[position[0]] == drawn.figure.data[trace].y[7]
    # with points named, they are the selection (what Plotly highlights), whatever the outlines
    both = selected_positions(SimpleNamespace(selection={"box": [box], "points": [clicked]}), drawn)
    assert np.array_equal(both, position)
    assert selected_positions(SimpleNamespace(selection={"box": [], "lasso": [], "points": []}), drawn) is None


def test_few_categories_get_a_legend(points):
    from views.explore_map import map_figure

    figure = map_figure(points, "venom_status").figure
    assert {trace.name for trace in figure.data} <= {"venomous", "harmless", "unknown", "unlabelled"}
    assert all(trace.showlegend for trace in figure.data)
