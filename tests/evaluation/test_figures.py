"""Figures of the reproduction: layouts, outlines and the weight statistics, on hand-built data."""

import cv2
import numpy as np
import pytest

from simgan_histo.evaluation import figures


def _solid(value, size=8):
    return np.full((size, size, 3), value, np.uint8)


def _read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_refinement_figure_lays_out_references_then_one_row_per_initial_patch(tmp_path):
    initial = np.stack([_solid(10), _solid(20)])
    references = np.stack([_solid(100), _solid(110), _solid(120)])
    refined = np.stack([[_solid(11), _solid(12), _solid(13)],
                        [_solid(21), _solid(22), _solid(23)]])
    path = tmp_path / "fig6.png"
    figures.refinement_figure(path, initial, references, refined)
    grid = _read_rgb(path)
    assert grid.shape == (3 * 8 + 2 * 4, 4 * 8 + 3 * 4, 3)
    step = 8 + 4
    assert (grid[0:8, 0:8] == 255).all()  # the corner above the initial column is blank
    assert (grid[0:8, step:step + 8] == 100).all()
    assert (grid[0:8, 3 * step:3 * step + 8] == 120).all()
    assert (grid[step:step + 8, 0:8] == 10).all()
    assert (grid[2 * step:2 * step + 8, 2 * step:2 * step + 8] == 22).all()
    assert (grid[8:12] == 255).all()  # gaps


def test_refinement_figure_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        figures.refinement_figure(tmp_path / "x.png", np.stack([_solid(1)]),
                                  np.stack([_solid(2), _solid(3)]),
                                  np.zeros((1, 3, 8, 8, 3), np.uint8))


def test_extremes_orders_weights_and_breaks_ties_by_index():
    weights = np.array([0.5, 2.0, 0.2, 2.0, 1.0, 0.2])
    top, bottom = figures.extremes(weights, 3)
    assert top.tolist() == [3, 1, 4]
    assert bottom.tolist() == [2, 5, 0]


def test_importance_figure_reports_the_weight_statistics_it_draws(tmp_path):
    weights = np.array([0.2, 0.2, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
    images = np.stack([_solid(25 * i, 16) for i in range(8)])
    path = tmp_path / "fig7.png"
    stats = figures.importance_figure(path, weights, images, (0.2, 2.0), count=3)
    assert stats["n"] == 8
    assert stats["mean"] == pytest.approx(9.4 / 8)
    assert stats["median"] == pytest.approx(1.25)
    assert stats["at_low"] == pytest.approx(2 / 8)
    assert stats["at_high"] == pytest.approx(3 / 8)
    png = _read_rgb(path)
    assert png.ndim == 3 and png.shape[0] > 300
    assert not list(tmp_path.glob(".*tmp*"))


def test_overlay_draws_truth_and_prediction_outlines():
    image = np.zeros((20, 20, 3), np.uint8)
    truth = np.zeros((20, 20), np.int32)
    truth[2:8, 2:8] = 1
    prediction = np.zeros((20, 20), np.int32)
    prediction[10:16, 10:16] = 7
    prediction[2:8, 2:8] = 3  # coincides with the truth: magenta wins
    out = figures.overlay(image, truth, prediction)
    assert tuple(out[10, 10]) == figures.PREDICTION_RGB  # a corner of the lone prediction
    assert tuple(out[12, 12]) == (0, 0, 0)  # its interior is untouched
    assert tuple(out[2, 5]) == figures.PREDICTION_RGB
    truth_only = figures.overlay(image, truth, np.zeros_like(prediction))
    outline = np.all(truth_only == figures.TRUTH_RGB, axis=-1)
    assert outline.sum() == 6 * 6 - 4 * 4  # the square's inner ring
    assert image.max() == 0  # the input is not modified


def test_organ_extremes_ranks_organs_by_mean_metric():
    per_image = {"a": {"aji": 0.6}, "b": {"aji": 0.4}, "c": {"aji": 0.7}, "d": {"aji": 0.3}}
    organs = {"a": "Lung", "b": "Lung", "c": "Brain", "d": "Colon"}
    best, worst, means = figures.organ_extremes(per_image, organs)
    assert (best, worst) == ("Brain", "Colon")
    assert means == pytest.approx({"Brain": 0.7, "Colon": 0.3, "Lung": 0.5})
