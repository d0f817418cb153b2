"""Distractors: blending by hand, and speckle at the intended opacity, only on tissue."""

import numpy as np

from simgan_histo.synthesis import distractors
from tests.synthesis.conftest import small_config


def test_blend_by_hand_with_an_origin():
    planes = np.full((3, 4, 4), 100.0, np.float32)
    alpha = np.full((2, 3), 0.25, np.float32)
    # Box (x 3..6, y 2..4) of a canvas in which the planes start at (2, 2): overlaps x 3..5.
    distractors.blend(planes, np.array([200.0, 0.0, 100.0]), alpha, (3, 2, 6, 4), origin=2)
    np.testing.assert_allclose(planes[0, 0:2, 1:4], 125.0)  # 100·0.75 + 200·0.25
    np.testing.assert_allclose(planes[1, 0:2, 1:4], 75.0)
    np.testing.assert_allclose(planes[2], 100.0)
    assert (planes[0, 2:] == 100.0).all() and (planes[0, :, 0] == 100.0).all()


def test_speckle_is_visible_at_its_opacity_and_only_on_tissue():
    config = small_config(speckle_max=100)
    tile = type("Tile", (), {"nuclear_percentile": 60.0,
                             "colour_by_h": np.zeros((100, 3), np.float32)})()
    on_tissue = np.zeros((96, 96), np.uint8)
    on_tissue[:, :48] = 1
    changed = []
    for seed in range(20):
        planes = np.full((3, 96, 96), 200.0, np.float32)
        distractors.add_speckle(np.random.default_rng(seed), planes, tile, config, 1.0,
                                on_tissue)
        assert (planes[:, :, 49:] == 200.0).all()  # glass untouched (blur reach 1 px)
        changed.append(200.0 - planes.min())
    # Star interiors get alpha = opacity ∈ [0.1, 0.35] of a black colour: 20..70 grey levels.
    assert 20.0 - 1e-3 <= max(changed) <= 70.0 + 1e-3
    assert np.median(changed) > 15.0


def test_speckle_is_off_by_default():
    assert small_config().speckle_max == 0
    planes = np.full((3, 32, 32), 50.0, np.float32)
    tile = type("Tile", (), {"nuclear_percentile": 60.0,
                             "colour_by_h": np.zeros((100, 3), np.float32)})()
    distractors.add_speckle(np.random.default_rng(0), planes, tile, small_config(), 1.0,
                            np.ones((32, 32), np.uint8))
    assert (planes == 50.0).all()
