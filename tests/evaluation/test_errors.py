"""Error analysis on a hand-built image with one case of each error."""

import math

import numpy as np

from simgan_histo.evaluation import errors


def _scene():
    gt = np.zeros((40, 40), np.uint16)
    pred = np.zeros((40, 40), np.uint16)
    gt[0:10, 0:10], gt[0:10, 10:20] = 1, 2      # two nuclei ...
    pred[0:10, 0:20] = 1                         # ... merged into one object
    gt[20:30, 0:10] = 3                          # one nucleus ...
    pred[20:30, 0:5], pred[20:30, 5:10] = 2, 3   # ... split in two
    gt[20:30, 20:30] = 4                         # a missed (pale) nucleus
    pred[32:38, 32:38] = 4                       # a false object on background
    gt[32:38, 0:6], pred[32:38, 0:7] = 5, 5      # a match, drawn one column too wide
    rgb = np.full((40, 40, 3), 245, np.uint8)
    colours = {1: (60, 20, 120), 2: (70, 30, 130), 3: (80, 40, 140), 4: (200, 170, 220),
               5: (90, 50, 150)}
    for label, colour in colours.items():
        rgb[gt == label] = colour
    return gt, pred, rgb


def test_each_error_counted_once():
    gt, pred, rgb = _scene()
    result = errors.image_errors(gt, pred, rgb)
    expected = {"n_true": 5, "n_pred": 5, "false": 1, "missed": 1, "merges": 1,
                "merged_true": 2, "splits": 1}
    assert {key: result[key] for key in expected} == expected
    # on-nucleus pixels: 200 (merge) + 100 (split) + 36 (match); predicted 378, true 436
    assert math.isclose(result["pixel_precision"], 336 / 378)
    assert math.isclose(result["pixel_recall"], 336 / 436)
    assert math.isclose(result["area_ratio"], 42 / 36)  # the only IoU > 0.5 pair
    # the palest third of 5 nuclei (at or below the 1/3 quantile) is {4, 5}: 4 missed, 5 found
    assert result["pale_recall"] == 0.5 and result["dark_recall"] == 1.0


def test_perfect_prediction_has_no_errors_and_no_rgb_gives_nan():
    gt, _, _ = _scene()
    result = errors.image_errors(gt, gt)
    assert result["false"] == result["missed"] == result["merges"] == result["splits"] == 0
    assert result["pixel_precision"] == result["pixel_recall"] == result["area_ratio"] == 1.0
    assert math.isnan(result["pale_recall"])


def test_groups_sum_counts_and_average_rates():
    gt, pred, rgb = _scene()
    per_image = {"a": errors.image_errors(gt, pred, rgb), "b": errors.image_errors(gt, gt, rgb),
                 "c": errors.image_errors(gt, pred, rgb)}
    summary = errors.group_errors(per_image, {"a": "Lung", "b": "Lung"})
    assert set(summary) == {"Lung", "unknown", "all"}
    assert summary["Lung"]["images"] == 2 and summary["Lung"]["false"] == 1
    assert summary["all"]["missed"] == 2 and summary["unknown"]["splits"] == 1
    assert math.isclose(summary["Lung"]["pixel_recall"], (336 / 436 + 1) / 2)
    assert "Lung" in errors.format_groups(summary)
