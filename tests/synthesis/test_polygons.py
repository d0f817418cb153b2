"""Mask sampler: polygon geometry against hand values, and the sampler's guarantees."""

import math

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.synthesis import labels
from simgan_histo.synthesis import polygons
from tests.synthesis.conftest import small_config


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


def test_points_in_quad_are_inside_and_uniform():
    rng = np.random.default_rng(2)
    quad = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float64)
    points = polygons.uniform_in_quad(rng, quad, 20000)
    assert points.min() >= 0 and points.max() <= 10
    np.testing.assert_allclose(points.mean(axis=0), [5, 5], atol=0.1)
    np.testing.assert_allclose(points.var(axis=0), [100 / 12] * 2, rtol=0.05)


def test_quad_maps_its_source_quad_onto_the_canvas():
    homography, quad = polygons.random_quad(np.random.default_rng(3), 100, 0.674)
    assert quad.min() >= 0 and quad.max() <= 167.4 + 1e-3  # inside the 1.674× source canvas
    np.testing.assert_allclose(polygons.apply_homography(homography, quad),
                               [[0, 0], [100, 0], [100, 100], [0, 100]], atol=1e-3)
    corners = polygons.apply_homography(np.linalg.inv(homography), np.array(
        [[0, 0], [100, 0], [100, 100], [0, 100]], np.float32))
    np.testing.assert_allclose(corners, quad, atol=1e-3)


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


def _sample(seed, tissue, count=40, config=None):
    config = config or small_config()
    rng = np.random.default_rng(seed)
    return polygons.sample_nuclei(rng, config, tissue, count, 1.0), config


def test_nuclei_lie_inside_the_canvas_on_tissue_and_are_large_enough():
    tissue = np.zeros((160, 160), np.uint8)
    tissue[:, :90] = 1  # tissue on the left only
    for seed in range(20):
        vertices, config = _sample(seed, tissue)
        assert len(vertices) <= 40
        assert vertices.min() >= 0 and vertices.max() <= 159
        assert (vertices[..., 0] < 90).all()
        assert (polygons.polygon_areas(vertices) > config.min_nucleus_area_px).all()
        drawn = labels.rasterise(vertices, 160)
        assert not drawn[:, 91:].any()


def test_no_tissue_no_nuclei():
    vertices, _ = _sample(0, np.zeros((160, 160), np.uint8))
    assert vertices.shape[0] == 0


def test_overlap_with_earlier_nuclei_is_bounded():
    # Pixel-exact overlap of each drawn nucleus with the union of the earlier ones. The
    # sampler bounds it on widened circles, so a few pixels of slack are allowed, and
    # almost no nucleus may exceed the configured bound.
    tissue = np.ones((160, 160), np.uint8)
    overlaps = []
    for seed in range(10):
        vertices, config = _sample(seed, tissue, count=60)
        union = np.zeros((160, 160), np.uint8)
        for polygon in vertices:
            own = labels.fill_union(polygon[None], 160)
            if own.sum() > 0:
                overlaps.append(float((own & union).sum() / own.sum()))
            union |= own
    overlaps = np.array(overlaps)
    assert len(overlaps) > 200
    assert overlaps.max() <= config.max_overlap + 0.1
    assert (overlaps > config.max_overlap).mean() <= 0.02


def test_circle_bound_holds_exactly():
    # The accepted set satisfies the rule it implements: summed circle overlap <= 0.15·area.
    rng = np.random.default_rng(4)
    centers = rng.uniform(0, 60, (80, 2))
    radii = rng.uniform(4, 8, 80)
    areas = math.pi * radii ** 2
    chosen, _ = polygons._accept(centers, radii, areas, 0, 0.15, 80, 1000)
    for position, index in enumerate(chosen):
        earlier = chosen[:position]
        distance = np.hypot(*(centers[earlier] - centers[index]).T)
        lens = polygons.circle_overlaps(distance, np.full(len(earlier), radii[index]),
                                        radii[earlier]).sum()
        assert lens <= 0.15 * areas[index] + 1e-9
    # ... and greedily: every rejected candidate violates it against the earlier accepted.
    rejected = sorted(set(range(80)) - set(chosen.tolist()))
    for index in rejected:
        earlier = chosen[chosen < index]
        distance = np.hypot(*(centers[earlier] - centers[index]).T)
        lens = polygons.circle_overlaps(distance, np.full(len(earlier), radii[index]),
                                        radii[earlier]).sum()
        assert lens > 0.15 * areas[index]


def test_sampling_is_a_function_of_the_seed():
    tissue = np.ones((160, 160), np.uint8)
    first, _ = _sample(7, tissue)
    again, _ = _sample(7, tissue)
    other, _ = _sample(8, tissue)
    np.testing.assert_array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)
