"""Reinhard statistics and normalisation on hand-made images."""

import numpy as np

from simgan_histo import stain


def test_reinhard_maps_statistics_onto_the_target():
    rng = np.random.default_rng(0)
    source_image = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    target_image = rng.integers(100, 240, (64, 64, 3), dtype=np.uint8)
    target = stain.lab_stats(target_image)
    mapped = stain.reinhard(source_image, stain.lab_stats(source_image), target)
    mean, std = stain.lab_stats(mapped)
    np.testing.assert_allclose(mean, target[0], atol=1.5)
    np.testing.assert_allclose(std, target[1], rtol=0.1, atol=1.0)


def test_identity_when_source_equals_target():
    rng = np.random.default_rng(1)
    image = rng.integers(30, 230, (32, 32, 3), dtype=np.uint8)
    stats = stain.lab_stats(image)
    assert np.abs(stain.reinhard(image, stats, stats).astype(int) - image).max() <= 2


def test_pooled_stats_equal_stats_of_the_concatenation():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (10, 20, 3), dtype=np.uint8)
    b = rng.integers(50, 150, (30, 20, 3), dtype=np.uint8)
    pooled = stain.pooled_stats([stain.lab_stats(a), stain.lab_stats(b)], [200, 600])
    whole = stain.lab_stats(np.concatenate([a, b]))
    np.testing.assert_allclose(pooled[0], whole[0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(pooled[1], whole[1], rtol=1e-3, atol=1e-3)


def test_hematoxylin_is_higher_on_purple_than_on_pink():
    purple = np.full((4, 4, 3), (80, 40, 140), np.uint8)
    pink = np.full((4, 4, 3), (230, 150, 200), np.uint8)
    assert stain.hed(purple)[..., 0].mean() > stain.hed(pink)[..., 0].mean()


def test_the_lookup_table_equals_the_direct_mapping_bit_for_bit(monuseg):
    import cv2  # pylint: disable=import-outside-toplevel
    images = sorted((monuseg / "train" / "images").glob("*.png"))[:2]
    real = np.concatenate([cv2.imread(str(p))[..., ::-1] for p in images], axis=1)
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (100, real.shape[1], 3), dtype=np.uint8)
    tile = np.ascontiguousarray(np.concatenate([real, noise])[:, :2000])
    assert tile.shape[0] * tile.shape[1] >= stain.TABLE_MIN_PIXELS  # the table path
    source = stain.lab_stats(tile)
    target = (np.array([62.0, 28.0, -18.0]), np.array([14.0, 9.0, 7.0]))
    np.testing.assert_array_equal(stain.reinhard_table(tile, source, target),
                                  stain.reinhard(tile, source, target))
