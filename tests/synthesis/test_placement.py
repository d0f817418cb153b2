"""Nucleus placement: the sampler's guarantees, its acceptance rule, and batch independence."""

import math

import numpy as np

from simgan_histo.synthesis import labels
from simgan_histo.synthesis import placement
from simgan_histo.synthesis import polygons
from tests.synthesis.conftest import small_config


def _sample(seed, tissue, count=40, config=None):
    config = config or small_config()
    rng = np.random.default_rng(seed)
    return placement.sample_nuclei(rng, config, tissue, count, 1.0), config


def test_points_in_quads_are_inside_and_uniform():
    rng = np.random.default_rng(2)
    quad = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float64)
    points = np.stack(placement._in_quads(np.repeat(quad[None], 20000, axis=0),
                                          *rng.random((3, 20000))), axis=1)
    assert points.min() >= 0 and points.max() <= 10
    np.testing.assert_allclose(points.mean(axis=0), [5, 5], atol=0.1)
    np.testing.assert_allclose(points.var(axis=0), [100 / 12] * 2, rtol=0.05)
    # A triangle-like quad (d = c): every point inside the triangle abc.
    triangle = np.array([[0, 0], [10, 0], [0, 10], [0, 10]], np.float64)
    points = np.stack(placement._in_quads(np.repeat(triangle[None], 5000, axis=0),
                                          *rng.random((3, 5000))), axis=1)
    assert (points.sum(axis=1) <= 10 + 1e-9).all() and points.min() >= 0


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


def _entries(owner, centers, areas, chunk=None):
    """Entries whose vertices all hold their own index (to follow them through)."""
    count, centers = len(owner), np.asarray(centers, np.float64).reshape(-1, 2)
    index = np.repeat(np.arange(count, dtype=np.float32)[None], 3, axis=0)
    chunk = np.zeros(count, np.int64) if chunk is None else np.asarray(chunk, np.int64)
    return placement._Entries(np.asarray(owner, np.int64), centers[:, 0], centers[:, 1],
                              np.asarray(areas, np.float64), index, index.copy(), chunk)


def _lens(centers, reach, index, earlier):
    distance = np.hypot(*(centers[earlier] - centers[index]).T)
    return polygons.circle_overlaps(distance, np.full(len(earlier), reach[index]),
                                    reach[earlier]).sum()


def test_circle_bound_holds_exactly_and_greedily():
    # The accepted set satisfies the rule it implements (summed lens of the widened circles
    # <= 0.15·area), and every rejected candidate violates it against the earlier accepted.
    rng = np.random.default_rng(4)
    centers = rng.uniform(0, 60, (80, 2))
    areas = math.pi * rng.uniform(4, 8, 80) ** 2
    reach = polygons.OVERLAP_RADIUS_FACTOR * np.sqrt(areas / math.pi)
    accepted, stalled, _, _ = placement._accept(
        _entries([], np.zeros((0, 2)), []), _entries(np.zeros(80), centers, areas),
        np.array([80]), (np.zeros(1, np.int64), np.zeros(1, np.int64)), 0.15, 1000)
    chosen = accepted.vx[0].astype(int)  # the candidate index rode along
    assert 10 < len(chosen) < 80 and not stalled[0]
    for position, index in enumerate(chosen):
        assert _lens(centers, reach, index, chosen[:position]) <= 0.15 * areas[index] + 1e-9
    for index in sorted(set(range(80)) - set(chosen.tolist())):
        assert _lens(centers, reach, index, chosen[chosen < index]) > 0.15 * areas[index]


def test_rejection_runs_stop_the_drawing_by_hand():
    # Patience 3: drawing stops at the 3rd consecutive rejection within a chunk.
    # Patch 0: accept, 3 rejections, accept → only the first is kept; stalled.
    # Patch 1: a run of 2 carried in, a rejection (the 3rd), accept → nothing kept; stalled.
    # Patch 2: run 2 carried in, accept, 2 rejections → kept; a run of 2 at the end.
    # Patch 3: run 2 carried in from chunk 0, but chunk 1 starts: 2 rejections, accept → kept.
    grid = [[1, 0, 0, 0, 1], [0, 1], [1, 0, 0], [0, 0, 1]]
    owner = np.concatenate([np.full(len(row), k) for k, row in enumerate(grid)])
    flags = np.concatenate([np.array(row, bool) for row in grid])
    chunk = (owner == 3).astype(np.int64)
    entries = _entries(owner, np.zeros((len(owner), 2)), np.ones(len(owner)), chunk)
    runs = (np.array([0, 2, 2, 2]), np.zeros(4, np.int64))
    kept, stalled, run, run_chunk = placement._cut(entries, flags,
                                                   np.full(4, 9), runs, 3)
    assert kept.owner.tolist() == [0, 2, 3] and kept.vx[0].tolist() == [0, 7, 12]
    assert stalled.tolist() == [True, True, False, False]
    assert run[2] == 2 and run[3] == 0 and run_chunk.tolist()[2:] == [0, 1]
    # The budget: at most `wanted` per patch, the first ones.
    kept, _, _, _ = placement._cut(entries, np.ones(len(owner), bool), np.array([2, 1, 1, 1]),
                                   (np.zeros(4, np.int64), np.zeros(4, np.int64)), 3)
    assert kept.vx[0].tolist() == [0, 1, 5, 7, 10]


def test_batch_placement_equals_per_patch_placement(monkeypatch):
    # Patch i's nuclei depend only on its own generator: not on the batch it is placed in,
    # nor on how its candidates are split into passes.
    config = small_config()
    tissue = np.ones((128, 128), np.uint8)
    tissue[:, 90:] = 0
    counts = [0, 5, 40, 80, 200, 10, 3, 60]
    biases = [0.8 + 0.1 * k for k in range(len(counts))]

    def place(indices):
        return placement.place_nuclei([np.random.default_rng([5, k]) for k in indices], config,
                                      np.stack([tissue] * len(indices)),
                                      [counts[k] for k in indices], [biases[k] for k in indices])

    together = place(range(len(counts)))
    assert sum(len(v) for v in together) > 50
    for k in range(len(counts)):
        np.testing.assert_array_equal(place([k])[0], together[k])
    monkeypatch.setattr(placement, "first_portion", lambda wanted: wanted * 0 + 10 ** 6)
    for k, whole in enumerate(place(range(len(counts)))):
        np.testing.assert_array_equal(whole, together[k])


def test_sampling_is_a_function_of_the_seed():
    tissue = np.ones((160, 160), np.uint8)
    first, _ = _sample(7, tissue)
    again, _ = _sample(7, tissue)
    other, _ = _sample(8, tissue)
    np.testing.assert_array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)
