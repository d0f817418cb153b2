"""Mask sampler: polygon geometry against hand values, and the sampler's guarantees."""

import math

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.synthesis import polygons


def test_regular_polygon_is_exact():
    # Irregularity 0 and spikiness 0: four vertices on the unit circle, 90° apart: area 2.
    rng = np.random.default_rng(0)
    vertices = polygons.polygon_vertices(rng, np.array([[5.0, 7.0]]), np.array([1.0]),
                                         np.zeros(1), np.zeros(1), np.array([4]))
    radii = np.hypot(*(vertices[0] - [5.0, 7.0]).T)
    np.testing.assert_allclose(radii, 1.0, atol=1e-6)
    np.testing.assert_allclose(polygons.polygon_areas(vertices), [2.0], atol=1e-5)


def test_polygon_radii_stay_within_twice_the_mean_and_counts_pad():
    rng = np.random.default_rng(1)
    count = 200
    vertices = polygons.polygon_vertices(
        rng, np.zeros((count, 2)), np.full(count, 10.0), np.ones(count), np.ones(count),
        rng.integers(10, 18, count))
    radii = np.hypot(vertices[..., 0], vertices[..., 1])
    assert vertices.shape == (count, 17, 2)
    assert radii.min() >= 0.0 and radii.max() <= 20.0 + 1e-4


def test_shoelace_areas():
    square = np.array([[[0, 0], [3, 0], [3, 3], [0, 3]]], np.float32)
    triangle = np.array([[[0, 0], [4, 0], [0, 2], [0, 2]]], np.float32)  # padded last vertex
    np.testing.assert_allclose(polygons.polygon_areas(np.concatenate([square, triangle])),
                               [9.0, 4.0])


@pytest.mark.parametrize("distance, expected", [
    (3.0, 0.0),  # apart
    (0.0, math.pi),  # identical unit circles
    (1.0, 2 * math.pi / 3 - math.sqrt(3) / 2),  # each centre on the other's rim
])
def test_circle_overlap_hand_values(distance, expected):
    value = polygons.circle_overlaps(np.array([distance]), np.array([1.0]), np.array([1.0]))
    np.testing.assert_allclose(value, [expected], atol=1e-9)


def test_quad_maps_its_source_quad_onto_the_canvas():
    homography, quad = polygons.random_quad(np.random.default_rng(3), 100, 0.674)
    assert quad.min() >= 0 and quad.max() <= 167.4 + 1e-3  # inside the 1.674× source canvas
    np.testing.assert_allclose(polygons.apply_homography(homography, quad),
                               [[0, 0], [100, 0], [100, 100], [0, 100]], atol=1e-3)
    corners = polygons.apply_homography(np.linalg.inv(homography), np.array(
        [[0, 0], [100, 0], [100, 100], [0, 100]], np.float32))
    np.testing.assert_allclose(corners, quad, atol=1e-3)


def test_classical_count_is_poisson_around_the_classical_count_and_capped():
    config = config_lib.SynthesisConfig()
    draws = [polygons.classical_count(np.random.default_rng(i), config, 30, 230)
             for i in range(4000)]
    assert np.mean(draws) == pytest.approx(30.0, abs=0.5)
    assert np.var(draws) == pytest.approx(30.0, abs=3.0)  # Poisson: variance = mean
    # count_max (256 per 460²) scaled to a 230² canvas: at most 64.
    assert polygons.classical_count(np.random.default_rng(0), config, 500, 230) == 64
    assert polygons.classical_count(np.random.default_rng(0), config, 0, 230) == 0


def test_count_follows_the_release_formula_scaled_by_area():
    config = config_lib.SynthesisConfig()
    draws = [polygons.nucleus_count(np.random.default_rng(i), config, 4.0, 230)
             for i in range(2000)]
    # N(20 + 30·4, 40) per 460², here a quarter of that area: mean 35, sd 10.
    assert np.mean(draws) == pytest.approx(35.0, abs=1.0)
    assert np.std(draws) == pytest.approx(10.0, abs=1.0)
    empty = np.mean([polygons.nucleus_count(np.random.default_rng(i), config, 0.5, 460) == 0
                     for i in range(2000)])
    # 10 % by rule, plus 90 % × P(N(35, 40) < 0.5) = 0.9 × Φ(−0.8625) = 0.9 × 0.1942.
    assert empty == pytest.approx(0.1 + 0.9 * 0.1942, abs=0.03)
