"""Morphometry of known shapes: an ellipse's area, eccentricity, perimeter; stain means."""

import math

import numpy as np
import pytest
from skimage import draw, measure

from simgan_histo import stain
from simgan_histo.postprocess import morphometry


def _ellipse_labels(a=30, b=15, rotation=0.6, centre=(50.0, 60.0)):
    labels = np.zeros((100, 130), np.int32)
    labels[draw.ellipse(*centre, b, a, shape=labels.shape, rotation=rotation)] = 3
    return labels


def test_ellipse_shape_measures():
    a, b = 30, 15
    row = morphometry.measure_nuclei(_ellipse_labels(a, b), mpp=0.5)
    assert list(row["label"]) == [3]
    assert row["area_px"][0] == pytest.approx(math.pi * a * b, rel=0.01)
    assert row["eccentricity"][0] == pytest.approx(math.sqrt(1 - (b / a) ** 2), abs=0.01)
    assert row["solidity"][0] == pytest.approx(1.0, abs=0.02)
    assert row["centroid_x"][0] == pytest.approx(60.0, abs=0.05)
    assert row["centroid_y"][0] == pytest.approx(50.0, abs=0.05)
    h = ((a - b) / (a + b)) ** 2
    ramanujan = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    assert row["perimeter_px"][0] == pytest.approx(ramanujan, rel=0.05)
    assert row["area_um2"][0] == pytest.approx(row["area_px"][0] * 0.25)
    assert row["perimeter_um"][0] == pytest.approx(row["perimeter_px"][0] * 0.5)


def test_stain_and_probability_means():
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 2:8], labels[10:18, 15:25] = 1, 2
    rgb = np.full((20, 30, 3), 235, np.uint8)
    rgb[labels == 1] = (90, 40, 140)
    rgb[labels == 2] = (200, 120, 180)
    segmentation = np.where(labels == 1, 0.9, np.where(labels == 2, 0.4, 0.0))
    rows = morphometry.measure_nuclei(labels, rgb, segmentation)
    expected = stain.hed(np.array([[[90, 40, 140], [200, 120, 180]]], np.uint8))[0]
    np.testing.assert_allclose(rows["mean_hematoxylin"], expected[:, 0], rtol=1e-5)
    np.testing.assert_allclose(rows["mean_eosin"], expected[:, 1], rtol=1e-5)
    np.testing.assert_allclose(rows["mean_segmentation"], [0.9, 0.4])
    assert rows["mean_hematoxylin"][0] > rows["mean_hematoxylin"][1]
    assert set(morphometry.COLUMNS) <= set(rows)


def test_agrees_with_skimage_on_many_shapes():
    rng = np.random.default_rng(0)
    labels = np.zeros((120, 120), np.int32)
    for index in range(15):
        r, c = rng.integers(10, 110, 2)
        shape = draw.ellipse(r, c, rng.integers(3, 9), rng.integers(3, 9), shape=labels.shape,
                             rotation=rng.uniform(0, 3))
        labels[shape] = index + 1
    ours = morphometry.measure_nuclei(labels)
    theirs = measure.regionprops_table(labels, properties=("label", "area", "eccentricity",
                                                           "centroid", "perimeter"))
    np.testing.assert_array_equal(ours["label"], theirs["label"])
    np.testing.assert_array_equal(ours["area_px"], theirs["area"])
    np.testing.assert_allclose(ours["eccentricity"], theirs["eccentricity"], atol=1e-9)
    np.testing.assert_allclose(ours["centroid_y"], theirs["centroid-0"], atol=1e-9)
    np.testing.assert_allclose(ours["perimeter_px"], theirs["perimeter"], rtol=0.15)


def test_empty_labels_and_bad_shapes():
    rows = morphometry.measure_nuclei(np.zeros((8, 8), np.int32), np.zeros((8, 8, 3), np.uint8))
    assert all(len(values) == 0 for values in rows.values())
    with pytest.raises(ValueError, match="rgb has shape"):
        morphometry.measure_nuclei(np.zeros((8, 8), np.int32), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="integer labels"):
        morphometry.measure_nuclei(np.zeros((8, 8), np.float64))


@pytest.fixture(scope="module")
def real_image(monuseg):
    """A MoNuSeg train image and its ground-truth instances (real nuclei, real stain)."""
    import cv2

    name = sorted((monuseg / "train" / "images").glob("*.png"))[1].name
    rgb = cv2.cvtColor(cv2.imread(str(monuseg / "train" / "images" / name)), cv2.COLOR_BGR2RGB)
    labels = cv2.imread(str(monuseg / "train" / "labels" / name), cv2.IMREAD_UNCHANGED)
    return rgb, labels.astype(np.int32)


def test_means_equal_whole_image_deconvolution_on_a_real_image(real_image):
    """H/E now come from the nucleus pixels only: equal to `stain.hed` of the whole image
    averaged with `ndimage.mean` (the previous definition)."""
    from scipy import ndimage

    rgb, labels = real_image
    segmentation = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    rows = morphometry.measure_nuclei(labels, rgb, segmentation)
    ids = np.unique(labels)[1:]
    assert len(ids) > 200
    np.testing.assert_array_equal(rows["label"], ids)
    densities = stain.hed(rgb)
    for column, channel in (("mean_hematoxylin", 0), ("mean_eosin", 1)):
        expected = ndimage.mean(densities[..., channel], labels, ids)
        np.testing.assert_allclose(rows[column], expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rows["mean_segmentation"],
                               ndimage.mean(segmentation.astype(np.float64), labels, ids),
                               rtol=1e-12)
    props = measure.regionprops_table(labels, properties=("area", "centroid", "eccentricity"))
    np.testing.assert_array_equal(rows["area_px"], props["area"])
    np.testing.assert_allclose(rows["centroid_x"], props["centroid-1"], atol=1e-9)
    np.testing.assert_allclose(rows["eccentricity"], props["eccentricity"], atol=1e-9)


def test_hed_densities_equal_skimage_on_real_pixels(real_image):
    pixels = real_image[0].reshape(-1, 3)[::7]
    pixels = np.concatenate([pixels, [[0, 0, 0], [255, 255, 255], [0, 255, 1]]]).astype(np.uint8)
    expected = stain.hed(pixels[:, None, :])[:, 0, :2]
    np.testing.assert_allclose(morphometry.hed_densities(pixels), expected, rtol=1e-6,
                               atol=1e-7)
