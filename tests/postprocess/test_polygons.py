"""Polygons: contour tracing round-trips to the same pixels; offsets, pieces, real labels."""

import cv2
import numpy as np
import pytest
from skimage import draw

from simgan_histo.postprocess import polygons


def _shapes():
    labels = np.zeros((60, 70), np.int32)
    labels[draw.disk((15, 15), 9, shape=labels.shape)] = 1
    labels[draw.ellipse(40, 40, 8, 15, shape=labels.shape, rotation=0.5)] = 2
    labels[2:10, 35:60] = 3  # rectangle
    labels[50:60, 0:12] = 4  # L-shape touching the image border
    labels[50:54, 12:20] = 4
    labels[20:30, 24:34] = 5
    labels[24:26, 24:34] = 6  # a bar cutting 5 in two: 5 keeps its larger piece
    labels[20:24, 24:34] = 0
    labels[8, 66] = 7  # a single pixel
    return labels


def test_round_trip_rasterises_back_to_the_same_mask():
    labels = _shapes()
    outlines = polygons.instance_polygons(labels)
    assert sorted(outlines) == [1, 2, 3, 4, 5, 6, 7]
    back = polygons.rasterize(outlines, labels.shape)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    # The rectangle's outline is its 4 corner pixels (CHAIN_APPROX_SIMPLE).
    assert sorted(map(tuple, outlines[3].astype(int))) == [(35, 2), (35, 9), (59, 2), (59, 9)]


def test_offset_and_scale():
    labels = _shapes()
    plain = polygons.instance_polygons(labels)
    moved = polygons.instance_polygons(labels, offset_xy=(100.0, 50.0), scale=2.0)
    np.testing.assert_allclose(moved[2], plain[2] * 2 + (100, 50))


def test_largest_piece_of_a_split_instance():
    labels = np.zeros((20, 20), np.int32)
    labels[1:4, 1:4] = 1
    labels[10:18, 10:18] = 1
    outline = polygons.instance_polygons(labels)[1]
    assert outline[:, 0].min() == 10 and outline[:, 1].max() == 17


def test_real_label_image_round_trip(monuseg):
    path = sorted((monuseg / "test" / "labels").glob("*.png"))[0]
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    outlines = polygons.instance_polygons(labels)
    assert len(outlines) == len(np.unique(labels)) - 1
    back = polygons.rasterize(outlines, labels.shape)
    assert np.mean(back == labels) > 0.999


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="integer labels"):
        polygons.instance_polygons(np.zeros((4, 4), np.float32))


def _padded_definition(labels):
    """The previous tracing: every bounding-box crop zero-padded by np.pad."""
    from scipy import ndimage

    result = {}
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is not None:
            crop = np.pad((labels[box] == index + 1).astype(np.uint8), 1)
            contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            contour = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
            result[index + 1] = contour[:, 0, :] + (box[1].start - 1, box[0].start - 1)
    return result


@pytest.mark.parametrize("window", [(slice(None), slice(None)), (slice(3, 517), slice(250, 700))])
def test_tracing_equals_the_padded_crop_definition(monuseg, window):
    """Nuclei cut by the image edge (the window) included; split instances included."""
    path = sorted((monuseg / "test" / "labels").glob("*.png"))[1]
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int32)[window]
    labels[::40] = 0  # splits some nuclei into pieces
    expected = _padded_definition(labels)
    outlines = polygons.instance_polygons(labels)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    assert len(set(edge.tolist()) - {0}) > 5
    assert list(outlines) == list(expected)
    for key, points in expected.items():
        np.testing.assert_array_equal(outlines[key], points)
