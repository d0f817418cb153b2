"""One tile's nuclei: ownership, level-0 geometry and measurements on a real image."""

import cv2
import numpy as np
import pytest
import shapely

from simgan_histo.postprocess import morphometry
from simgan_histo.wsi import nuclei, tiling


def test_nucleus_id_is_the_uuid5_of_slide_and_centroid():
    import uuid

    rng = np.random.default_rng(3)
    for name in ("slide", "TCGA-44-2665 ü", ""):
        for x, y in rng.uniform(-5, 2e5, size=(200, 2)):
            expected = uuid.uuid5(nuclei.NAMESPACE, f"{name}:{x:.2f}:{y:.2f}")
            assert nuclei.nucleus_id(name, x, y) == str(expected)
    assert nuclei.nucleus_id("a", 1.004, 2.0) == nuclei.nucleus_id("a", 1.0, 2.0)


def test_valid_outlines_rounds_and_repairs():
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    bowtie = np.array([[0.0, 0.0], [4.0, 4.0], [4.0, 0.0], [0.0, 4.0]])  # self-crossing
    rings = nuclei.valid_outlines([square + 0.00049, np.zeros((0, 2)), square[:2], bowtie])
    np.testing.assert_array_equal(rings[0], square)
    assert rings[1] is None and rings[2] is None
    assert shapely.Polygon(rings[3]).is_valid and shapely.Polygon(rings[3]).area == 4.0


def test_count_changed_equals_allclose_per_ring():
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    rings = [square, square + 0.0004, square, square[:3], None, square * 2]
    traced = [square, square, square + 0.01, square, square, square]
    expected = sum(1 for ring, points in zip(rings, traced) if ring is not None and (
        len(ring) != len(points) or not np.allclose(ring, points, atol=1e-3)))
    assert expected == 3  # moved by 0.01, shorter, doubled
    assert nuclei._count_changed(rings, traced) == expected
    assert nuclei._count_changed([None, None], [square, square]) == 0


def test_touches_border_hand_computed():
    labels = np.zeros((10, 12), np.uint32)
    labels[0, 5] = 1  # top edge
    labels[4:6, 4:6] = 2  # inside
    labels[8, 10] = 3  # 1 px from the bottom and right edges: only with margin 2
    labels[5, 11] = 4  # right edge
    assert nuclei._touches_border(labels, 0).tolist() == [1, 4]
    assert nuclei._touches_border(labels, 2).tolist() == [1, 3, 4]


@pytest.fixture(scope="module")
def real_tile(monuseg):
    name = sorted((monuseg / "train" / "images").glob("*.png"))[2].name
    rgb = cv2.cvtColor(cv2.imread(str(monuseg / "train" / "images" / name)), cv2.COLOR_BGR2RGB)
    labels = cv2.imread(str(monuseg / "train" / "labels" / name), cv2.IMREAD_UNCHANGED)
    return rgb[:512, :512], labels[:512, :512].astype(np.uint32)


def test_tile_nuclei_keeps_owned_nuclei_with_direct_measurements(real_tile):
    """A 512-px read window (overlap 64) at region offset (1000, 2000), downsample 2."""
    rgb, labels = real_tile
    tile = tiling.cover((3000, 3000), 512, 64)[9]  # 7 columns: row 1, col 2 (interior)
    assert not (tile.first_row or tile.first_col or tile.last_row or tile.last_col)
    origin, downsample = (1000, 2000), 2.0
    segmentation = (labels > 0).astype(np.float32) * 0.8
    table = nuclei.tile_nuclei(labels, rgb, segmentation, tile, origin, downsample, 0.5, "s")

    # Direct: the instances whose centroid (corner frame, region px) lies in the core.
    everything = morphometry.measure_nuclei(labels, rgb, segmentation, mpp=0.5)
    x = everything["centroid_x"] + 0.5 + tile.read[0]
    y = everything["centroid_y"] + 0.5 + tile.read[1]
    owned = tile.is_responsible(x, y)
    assert 50 < owned.sum() < len(x)
    assert len(table) == owned.sum() and table.stats["polygons_dropped"] == 0
    order = np.lexsort((everything["centroid_x"][owned], everything["centroid_y"][owned]))
    for column in ("area_px", "mean_hematoxylin", "mean_eosin", "eccentricity", "solidity"):
        np.testing.assert_allclose(table.columns[column], everything[column][owned][order])
    np.testing.assert_allclose(table.columns["centroid_x"],
                               (x[owned][order] + origin[0]) * downsample)
    assert len(set(table.ids)) == len(table)
    polygons = shapely.polygons([shapely.linearrings(ring) for ring in table.polygons])
    assert shapely.is_valid(polygons).all()
    # Each outline encloses its centroid, in level-0 px.
    points = shapely.points(table.columns["centroid_x"], table.columns["centroid_y"])
    assert shapely.contains(polygons, points).mean() > 0.95
