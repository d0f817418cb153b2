"""The classical baseline (Otsu on hematoxylin + distance watershed) on real H&E crops."""

import cv2
import numpy as np
import pytest

from simgan_histo.evaluation import baseline, metrics


@pytest.fixture(scope="module")
def crop(monuseg):
    """A 256×256 crop of a MoNuSeg test image and its labels (40×, 0.25 µm/px)."""
    name = "TCGA-ZF-A9R5-01A-01-TS1.png"
    rgb = cv2.imread(str(monuseg / "test" / "images" / name))[..., ::-1]
    labels = cv2.imread(str(monuseg / "test" / "labels" / name), cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(rgb[300:556, 300:556]), labels[300:556, 300:556]


def test_finds_nuclei_on_real_tissue(crop):
    rgb, truth = crop
    labels = baseline.segment(rgb, mpp=0.25)
    assert labels.dtype == np.uint32 and labels.shape == truth.shape
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # consecutive ids
    scores = metrics.image_metrics(truth, labels)
    # Full test split: Dice1 0.78, AJI 0.53 (README); a crop is noisier.
    assert scores["dice1"] > 0.7 and scores["aji"] > 0.4
    assert 0.7 < scores["n_pred"] / scores["n_true"] < 1.4


def test_lengths_follow_the_mpp(crop):
    rgb, _ = crop
    full = baseline.segment(rgb, mpp=0.25)
    half = baseline.segment(cv2.resize(rgb, (128, 128), interpolation=cv2.INTER_AREA), mpp=0.5)
    assert abs(int(half.max()) - int(full.max())) <= 0.25 * full.max()
    # Smallest kept area: 5 µm² = 80 px at 0.25, 20 px at 0.5.
    assert np.bincount(full.ravel())[1:].min() >= 80
    assert np.bincount(half.ravel())[1:].min() >= 20


def test_blank_image_has_no_nuclei_and_bad_input_raises():
    blank = np.full((64, 64, 3), 240, np.uint8)
    blank[10:20, 10:20] = 235  # Otsu always finds a split; it must not become many nuclei
    assert baseline.segment(blank).max() <= 1
    with pytest.raises(ValueError, match="uint8 RGB"):
        baseline.segment(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="mpp"):
        baseline.segment(np.zeros((8, 8, 3), np.uint8), mpp=0)
