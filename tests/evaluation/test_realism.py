"""Realism measures of refined patches on hand-made cases with hand-computed answers."""

import numpy as np
import pytest

from simgan_histo import patch_file
from simgan_histo import stain
from simgan_histo.evaluation import realism


def _texture(count=6, size=32, seed=0):
    """Pink-purple random texture, uint8, away from the 0/255 limits."""
    rng = np.random.default_rng(seed)
    base = np.array([200, 140, 190], np.float64)
    noise = rng.normal(0, 18, (count, size, size, 1)) * np.array([1.0, 1.2, 0.6])
    return np.clip(base + noise, 30, 225).astype(np.uint8)


def test_sliced_wasserstein_in_one_dimension_by_hand():
    one = np.ones((1, 1))
    # Sorted pairs (0, 0) and (1, 3): mean |difference| = (0 + 2) / 2.
    assert realism.sliced_wasserstein([[0.0], [1.0]], [[3.0], [0.0]], one) == pytest.approx(1.0)
    # Unequal sizes: {0, 1, 2, 3} read at the quantile levels 1/4 and 3/4 is {0.5, 2.5}.
    four = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert realism.sliced_wasserstein(four, [[0.5], [2.5]], one) == pytest.approx(0.0)


def test_translation_moves_each_slice_by_its_projection():
    points = np.random.default_rng(1).normal(size=(50, 3))
    shift = np.array([3.0, -1.0, 0.0])
    # Axis directions: slices move by 3, 1 and 0; mean 4/3.
    assert realism.sliced_wasserstein(points, points + shift, np.eye(3)) == pytest.approx(4 / 3)


def test_random_directions_are_unit_vectors_and_seeded():
    directions = realism.random_directions(147, 16, seed=3)
    assert directions.shape == (147, 16)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(directions, realism.random_directions(147, 16, seed=3))


def test_neighbourhoods_read_the_lab_window():
    image = _texture(1, 7)  # exactly one 7×7 position
    found = realism.lab_neighbourhoods(image, 3, np.random.default_rng(0))
    assert found.shape == (3, 7 * 7 * 3)
    expected = stain.to_lab(image[0]).reshape(-1)
    for row in found:
        np.testing.assert_array_equal(row, expected)
    white = np.full((2, 16, 16, 3), 255, np.uint8)
    lab = realism.lab_neighbourhoods(white, 4, np.random.default_rng(0)).reshape(-1, 3)
    np.testing.assert_allclose(lab, np.tile([100.0, 0.0, 0.0], (len(lab), 1)), atol=1e-2)
    with pytest.raises(ValueError, match="smaller"):
        realism.lab_neighbourhoods(white[:, :5, :5], 1, np.random.default_rng(0))


def test_distance_is_zero_for_identical_sets_and_grows_with_a_colour_shift():
    real = _texture(seed=0)
    assert realism.realism_distance(real.copy(), real, per_image=16) == 0.0
    distances = []
    for shift in (0, 10, 30):
        shifted = np.clip(real.astype(int) + [shift, 0, shift // 2], 0, 255).astype(np.uint8)
        distances.append(realism.realism_distance(shifted, _texture(seed=5), per_image=16))
    assert distances[0] < distances[1] < distances[2]


def test_otsu_h_dice_by_hand():
    image = np.full((64, 64, 3), (235, 190, 215), np.uint8)  # pale pink
    image[20:40, 20:40] = (70, 40, 130)  # a dark purple 20×20 "nucleus"
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = patch_file.MASK_NUCLEUS | patch_file.MASK_CENTROID
    assert realism.otsu_h_dice(image, mask) == pytest.approx(1.0)
    shifted = np.zeros_like(mask)
    shifted[20:40, 30:50] = patch_file.MASK_NUCLEUS
    shifted[20:40, 50:52] = patch_file.MASK_CONTOUR  # not nucleus: ignored
    # Overlap 20×10 = 200 px, sizes 400 + 400: Dice = 400 / 800.
    assert realism.otsu_h_dice(image, shifted) == pytest.approx(0.5)


def test_mean_abs_delta_by_hand():
    initial = np.zeros((2, 2, 2, 3), np.uint8)
    refined = initial.copy()
    refined[0] = 10
    assert realism.mean_abs_delta(initial, refined) == pytest.approx(5.0)
    assert realism.mean_abs_delta(refined, initial) == pytest.approx(5.0)


def test_real_crops_come_from_the_named_tiles():
    class Tile:
        def __init__(self, value):
            self.rgb = np.full((40, 50, 3), value, np.uint8)
            self.rgb[..., 1] = np.arange(50)[None, :]  # column index in green

    tiles = [Tile(7), Tile(9)]
    crops = realism.real_crops(tiles, [1, 0, 1], 16, np.random.default_rng(0))
    assert crops.shape == (3, 16, 16, 3)
    assert [int(c[0, 0, 0]) for c in crops] == [9, 7, 9]
    for crop in crops:  # a contiguous window: 16 consecutive columns
        assert (np.diff(crop[0, :, 1].astype(int)) == 1).all()


def test_evaluate_scores_a_perfect_refiner():
    real = _texture(seed=0)
    initial = np.clip(real.astype(int) + [25, -10, 0], 0, 255).astype(np.uint8)
    masks = np.zeros(real.shape[:3], np.uint8)
    masks[:, 8:16, 8:16] = patch_file.MASK_NUCLEUS
    result = realism.evaluate(initial, real.copy(), masks, real, real_again=_texture(seed=9),
                              per_image=16)
    assert result["swd_refined"] == 0.0 and result["swd_reduction"] == 1.0
    assert result["swd_initial"] > result["swd_real_floor"] > 0.0
    assert result["mean_abs_delta"] == pytest.approx(35 / 3)
    with pytest.raises(ValueError, match="differ"):
        realism.evaluate(initial[:2], real, masks, real)
