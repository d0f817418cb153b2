"""Texture helpers against hand values: kernels, blocky noise, colour jitter."""

import numpy as np
import pytest

from simgan_histo.synthesis import textures


def test_symmetric_kernels_by_hand():
    np.testing.assert_allclose(textures._symmetric(np.array([[1.0, 2.0], [1.0, 1.0]])),
                               [[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    taps = textures._peaked_kernel(np.random.default_rng(0), 3, (1.0, 4.0))
    assert taps.shape == (7,) and taps.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(taps, taps[::-1])
    assert taps[3] == taps.max() and taps.min() > 0


def test_blocky_field_is_constant_on_aligned_blocks():
    for seed in range(5):
        field = textures.blocky_field(np.random.default_rng(seed), 60, 5)
        assert field.shape == (60, 60) and field.dtype == np.uint8
        blocks = field.reshape(12, 5, 12, 5)
        assert (blocks == blocks[:, :1, :, :1]).all()  # one value per 5×5 block
    values = textures.blocky_field(np.random.default_rng(0), 400, 2)
    assert 120 < values.mean() < 135 and values.min() < 5 and values.max() > 250


def test_clearing_share_follows_the_area_thresholds():
    """Release rule: under the small area U(0, 15); above the large one 10 + U(0, 42);
    between, U(0, 15) with p 0.4 else U(0, 42)."""
    def shares(area, thresholds):
        return np.array([textures.transparency_percentile(np.random.default_rng(i), area,
                                                          thresholds) for i in range(400)])

    release = shares(290.0, (800.0, 2400.0))  # a cpu_small-sized nucleus, release thresholds
    assert release.max() < 15.0
    scaled = shares(290.0, (240.0, 720.0))  # the same nucleus, thresholds in its own scale
    assert scaled.max() > 30.0 and 0.2 < (scaled > 15.0).mean() < 0.5  # ≈ 0.6 · 27/42 = 0.39
    large = shares(800.0, (240.0, 720.0))
    assert large.min() >= 10.0 and large.max() <= 52.0


def test_blur_radius_scales_with_the_clearing_thresholds():
    """Release thresholds: radii 3/5 under 800 px, 3/5/7 up to 2400. Thresholds 240/720 are
    the release's × 0.3, so the radii are × √0.3 ≈ 0.548 and rounded: 3/5/7 → 2/3/4."""
    def radii(area, thresholds):
        return {textures.blur_radius(np.random.default_rng(i), 5.0, area, thresholds)
                for i in range(60)}

    assert radii(500.0, (800.0, 2400.0)) == {3, 5}
    assert radii(1000.0, (800.0, 2400.0)) == {3, 5, 7}
    assert radii(100.0, (240.0, 720.0)) == {2, 3}
    assert radii(500.0, (240.0, 720.0)) == {2, 3, 4}
    assert radii(500.0, (800.0, 2400.0)) == radii(500.0, textures.RELEASE_CLEARING_PX
                                                   * np.array([1.0, 3.0]))


def test_clearing_rim_width_scales_with_the_thresholds():
    """Release: U{5..16} px. Thresholds 240/720 (× 0.3): × √0.3, rounded, at least 3 —
    5 → 3, 16 → 9; the same draw gives the scaled value of the release's."""
    release = [textures.rim_width(np.random.default_rng(i), (800.0, 2400.0)) for i in range(300)]
    scaled = [textures.rim_width(np.random.default_rng(i), (240.0, 720.0)) for i in range(300)]
    assert set(release) == set(range(5, 17))
    assert set(scaled) == {round(w * 0.3 ** 0.5) for w in range(5, 17)} == set(range(3, 10))
    assert all(s == max(3, round(r * 0.3 ** 0.5)) for r, s in zip(release, scaled))


def test_colour_jitter_formula():
    rng = np.random.default_rng(3)
    u = np.random.default_rng(3).random(6)
    scale, offset = textures.jitter_params(rng, 0.5, [100.0, 50.0, 0.0])
    expected_scale = 1.0 + (u[:3] * 2 - 1) * 0.045
    np.testing.assert_allclose(scale, expected_scale)
    np.testing.assert_allclose(offset, np.array([100.0, 50.0, 0.0]) * (1 - expected_scale)
                               + (u[3:] * 2 - 1) * 3.0)


def test_background_applies_the_stain_and_colour_jitter_formula():
    """B' = B · exp(k_H·(a·s_H·H + b) + k_E·c·s_E·E) · s + o per channel, in float64."""
    from skimage import color  # pylint: disable=import-outside-toplevel
    from simgan_histo import config as config_lib  # pylint: disable=import-outside-toplevel
    config = config_lib.SynthesisConfig(stain_scale_jitter=0.3, hematoxylin_shift_max=0.05)
    data = np.random.default_rng(7)
    planes = data.integers(0, 256, (3, 20, 30), dtype=np.uint8)
    stain = data.integers(0, 256, (2, 20, 30), dtype=np.uint8)
    stain_scale, means = np.float32([0.004, 0.003]), np.float32([200.0, 150.0, 190.0])
    out = textures.background(np.random.default_rng(11), planes, stain, stain_scale, means,
                              config)
    draws = np.random.default_rng(11)
    a, c = (draws.random(2) * 2 - 1) * 0.3
    b = draws.random() * 0.05
    scale, offset = textures.jitter_params(draws, config.color_jitter, means)
    k = np.log(1e-6) * color.rgb_from_hed[:2]
    for channel in range(3):
        gain = np.exp(k[0, channel] * (a * stain_scale[0] * stain[0].astype(float) + b)
                      + k[1, channel] * c * stain_scale[1] * stain[1].astype(float))
        expected = planes[channel] * gain * scale[channel] + offset[channel]
        np.testing.assert_allclose(out[channel], expected, rtol=2e-6, atol=2e-4)
