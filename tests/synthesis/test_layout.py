"""Nucleus layouts read off the tissue: outlines, per-tile polygons, patches built on them."""

import cv2
import numpy as np
import pytest

from simgan_histo import synthesis
from simgan_histo.synthesis import compose
from simgan_histo.synthesis import layout
from simgan_histo.synthesis import tissue
from tests.synthesis.conftest import small_config


def _fill(polygons, shape):
    """Boolean mask of one (V, 2) polygon or a stack (K, V, 2) of them."""
    drawn = np.zeros(shape, np.uint8)
    polygons = np.round(polygons).astype(np.int32)
    cv2.fillPoly(drawn, list(polygons.reshape((-1,) + polygons.shape[-2:])), 1)
    return drawn.astype(bool)


def test_outline_of_a_disc_draws_the_disc_back():
    disc = np.zeros((40, 40), np.uint8)
    cv2.circle(disc, (20, 18), 9, 1, -1)  # 253 px
    points = layout.outline(disc, 17)
    assert points.shape == (17, 2)
    np.testing.assert_allclose(np.hypot(points[:, 0] - 20, points[:, 1] - 18), 9, atol=1.0)
    drawn = _fill(points, disc.shape)
    overlap = np.count_nonzero(drawn & (disc > 0)) / np.count_nonzero(drawn | (disc > 0))
    assert overlap > 0.9


def test_from_labels_one_polygon_per_instance_in_tile_coordinates():
    labels = np.zeros((60, 80), np.int32)
    labels[10:20, 5:25] = 1  # a 10 × 20 rectangle
    cv2.circle(labels, (60, 40), 7, 3, -1)  # id 2 is absent: ids need not be consecutive
    labels[55:57, 0:2] = 4  # 4 px: a speck, skipped
    found = layout.from_labels(labels, 12)
    assert len(found) == 2 and found.polygons.shape == (2, 12, 2)
    np.testing.assert_allclose(found.boxes[0], [5, 10, 24, 19], atol=0.5)  # inclusive pixels
    np.testing.assert_allclose(found.boxes[1], [53, 33, 67, 47], atol=0.5)
    assert _fill(found.polygons[0], labels.shape)[labels == 1].all()


def test_in_canvas_takes_the_polygons_that_reach_in_and_shifts_them():
    square = np.float32([[0, 0], [4, 0], [4, 4], [0, 4]])
    found = layout.Layout(np.stack([square + 10, square + 50, square + 98]))
    np.testing.assert_array_equal(found.boxes[1], [50, 50, 54, 54])
    inside = found.in_canvas(40, 40, 60)  # [40, 100): the second and the third reach in
    assert inside.shape == (2, 4, 2)
    np.testing.assert_array_equal(inside[0], square + 10)
    assert len(found.in_canvas(200, 200, 50)) == 0


def test_classical_layout_puts_synthetic_nuclei_where_the_baseline_found_real_ones(tissue_dir):
    config = small_config(layout_source="classical")
    source = synthesis.TissueSource.from_paths(tissue_dir, config, mpp=0.25)
    nuclear = [tissue.classical_labels(tile.rgb, 0.25) > 0 for tile in source.tiles]
    assert all(len(tile.layout) > 5 for tile in source.tiles)
    # Outlines through boundary pixels and the texture's blur differ by a pixel.
    inside, covered = _patch_overlaps(source, config, nuclear)
    assert min(inside) > 0.85 and min(covered) > 0.85


def _patch_overlaps(source, config, nuclear, count=12):
    """For each of the first `count` patches with nuclei: the share of its labelled pixels
    that lie in `nuclear` (the tile's map) at its position, and the share of `nuclear` there
    that is labelled. At least 6 patches must have nuclei."""
    batch = synthesis.make_batch(source, 0, range(count))
    size, inside, covered = config.patch_size, [], []
    for index, ids in enumerate(batch["labels"]):
        plan = compose._plan(source.tiles, config, 0, index)  # pylint: disable=protected-access
        x, y = plan.patch
        found = nuclear[plan.tile_index][y:y + size, x:x + size]
        drawn = ids > 0
        if drawn.any():
            both = np.count_nonzero(found & drawn)
            inside.append(both / np.count_nonzero(drawn))
            covered.append(both / max(np.count_nonzero(found), 1))
    assert len(inside) >= 6
    return inside, covered


def test_net_layout_puts_synthetic_nuclei_where_the_exported_net_found_real_ones(
        tissue_dir, tmp_path_factory):
    from tests.wsi import export_helpers  # pylint: disable=import-outside-toplevel
    from simgan_histo import api  # pylint: disable=import-outside-toplevel
    model_dir = export_helpers.darkness_export(tmp_path_factory)  # a real export, 0.5 µm/px
    config = small_config(layout_source="net", layout_model=str(model_dir))
    source = synthesis.TissueSource.from_paths(tissue_dir, config, mpp=0.25)
    # The hand-set net's instances are crude (2 to 50 per tile, some large and ragged) but
    # they are its own, found at the tiles' 0.25 µm/px.
    found = [api.load(model_dir).predict_labels(tile.rgb, 0.25) > 0 for tile in source.tiles]
    assert sum(len(tile.layout) for tile in source.tiles) > 40
    for tile, nuclear in zip(source.tiles, found):
        drawn = _fill(tile.layout.polygons, nuclear.shape)
        # 17 vertices per outline cut the corners of ragged instances.
        assert np.count_nonzero(nuclear & drawn) > 0.75 * np.count_nonzero(nuclear | drawn)
    inside, _ = _patch_overlaps(source, config, found)
    assert min(inside) > 0.8


def test_net_layout_without_a_model_is_a_config_error():
    with pytest.raises(ValueError, match="layout_model"):
        small_config(layout_source="net")
    with pytest.raises(ValueError, match="layout_model"):
        small_config(layout_model="runs/a/export")


def test_net_layout_with_a_missing_export_fails_before_reading_tissue(tmp_path):
    config = small_config(layout_source="net", layout_model=str(tmp_path / "no_export"))
    # An empty tissue folder would fail with "no usable tissue tile" once read.
    with pytest.raises(FileNotFoundError, match="no exported model"):
        synthesis.TissueSource.from_paths(tmp_path, config, mpp=0.25)
