"""The Reinhard target: tissue mask by hand, pooling, and data/reinhard_target.json recomputed."""

import json

import numpy as np
import pytest

from simgan_histo import stain
from simgan_histo.training import stain_target


def test_tissue_mask_excludes_glass_and_white():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (250, 250, 250)  # glass
    rgb[0, 1] = (200, 200, 200)  # grey, unsaturated: not stained
    rgb[0, 2] = (200, 120, 180)  # eosin pink
    rgb[1, :] = (90, 50, 140)  # hematoxylin purple
    np.testing.assert_array_equal(stain_target.tissue_mask(rgb),
                                  [[False, False, True], [True, True, True]])


def test_tissue_target_ignores_background_pixels():
    tissue = np.full((8, 8, 3), (150, 80, 160), np.uint8)
    with_glass = np.concatenate([tissue, np.full((8, 8, 3), 255, np.uint8)], axis=1)
    expected = stain.lab_stats(tissue)
    mean, std = stain_target.tissue_target([with_glass])
    np.testing.assert_allclose(mean, expected[0], atol=1e-4)
    np.testing.assert_allclose(std, expected[1], atol=1e-4)
    with pytest.raises(ValueError, match="no tissue"):
        stain_target.tissue_target([np.full((8, 8, 3), 255, np.uint8)])


def test_image_stats_measure_the_tissue_as_the_target_does():
    rng = np.random.default_rng(0)
    tissue = np.where(rng.random((32, 32, 1)) < 0.3, (90, 50, 140), (200, 120, 180))
    tissue = tissue.astype(np.uint8)
    with_glass = np.concatenate([tissue, np.full((32, 48, 3), 250, np.uint8)], axis=1)
    mean, std = stain_target.image_stats(with_glass)
    expected = stain.lab_stats(tissue)
    np.testing.assert_allclose(mean, expected[0], atol=1e-4)
    np.testing.assert_allclose(std, expected[1], atol=1e-4)
    # The glass would lighten the mean by tens of L units.
    assert stain.lab_stats(with_glass)[0][0] > mean[0] + 20
    few = np.full((64, 64, 3), 250, np.uint8)
    few[:15, :15] = (90, 50, 140)  # 225 tissue pixels < MIN_SOURCE_PIXELS
    assert stain_target.image_stats(few) is None


def test_default_target_is_recomputed_from_the_sample_slide(sample_slide):
    stored = json.loads(stain_target.DEFAULT_TARGET_PATH.read_text())
    mean, std = stain_target.slide_target(sample_slide)
    np.testing.assert_allclose(mean, stored["lab_mean"], atol=1e-3)
    np.testing.assert_allclose(std, stored["lab_std"], atol=1e-3)
    loaded = stain_target.load_target()
    np.testing.assert_allclose(loaded[0], stored["lab_mean"])
    # H&E tissue: mid lightness, pink (a > 0), bluish (b < 0).
    assert 30 < mean[0] < 80 and mean[1] > 5 and mean[2] < 0
