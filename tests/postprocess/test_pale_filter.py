"""The hematoxylin floor: pale instances dropped in the watershed, the grid and the slide path."""

import functools

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo import stain
from simgan_histo.postprocess import watershed
from simgan_histo.training import task_validation
from simgan_histo.wsi import model as wsi_model
from simgan_histo.wsi import parity

DARK, PALE = (90, 40, 140), (230, 190, 215)  # a hematoxylin-rich nucleus, pink stroma


def _scene():
    """A 64×64 white image with a dark disc (id 1) and a pale disc (id 2) of radius 8."""
    image = np.full((64, 64, 3), 245, np.uint8)
    labels = np.zeros((64, 64), np.int32)
    for index, (centre, colour) in enumerate((((18, 32), DARK), ((46, 32), PALE)), start=1):
        cv2.circle(image, centre, 8, colour, -1)
        cv2.circle(labels, centre, 8, index, -1)
    return image, labels


def test_mean_hematoxylin_and_drop_pale_by_hand():
    image, labels = _scene()
    density = stain.hed(image)[..., 0]
    np.testing.assert_array_equal(watershed.hematoxylin(image), density)
    means = watershed.mean_hematoxylin(labels, density)
    for index in (0, 1, 2):
        assert means[index] == pytest.approx(density[labels == index].mean(), rel=1e-5)
    dark, pale = stain.hed(np.array([[DARK, PALE]], np.uint8))[0, :, 0]
    assert pale < dark
    kept = watershed.drop_pale(labels, density, (dark + pale) / 2)
    np.testing.assert_array_equal(kept, (labels == 1).astype(np.uint32))
    np.testing.assert_array_equal(watershed.drop_pale(labels, density, 0.0), labels)
    with pytest.raises(ValueError, match="differ in size"):
        watershed.mean_hematoxylin(labels, density[:, :-1])


def _maps(labels):
    """Both discs as foreground, each with a detection peak at its centre."""
    segmentation = (labels > 0).astype(np.float32)
    detection = np.zeros_like(segmentation)
    detection[32, 18] = detection[32, 46] = 1.0
    return segmentation, detection


def test_the_watershed_drops_pale_instances_only_when_asked():
    image, labels = _scene()
    segmentation, detection = _maps(labels)
    dark, pale = stain.hed(np.array([[DARK, PALE]], np.uint8))[0, :, 0]
    base = watershed.Thresholds(det_sigma=0, seg_threshold=0.5, det_threshold=0.5)
    assert watershed.instances_from_maps(segmentation, detection, base).max() == 2
    floor = base.replace(min_hematoxylin=float((dark + pale) / 2))
    kept = watershed.instances_from_maps(segmentation, detection, floor, image=image)
    np.testing.assert_array_equal(kept > 0, labels == 1)
    with pytest.raises(ValueError, match="needs the RGB image"):
        watershed.instances_from_maps(segmentation, detection, floor)
    with pytest.raises(ValueError, match="min_hematoxylin"):
        watershed.Thresholds(min_hematoxylin=-0.1)


def test_selection_grid_picks_the_floor_that_drops_a_pale_false_object():
    image, labels = _scene()
    truth = (labels == 1).astype(np.uint16)  # the pale disc is stroma, not a nucleus
    segmentation, detection = _maps(labels)
    dark, pale = stain.hed(np.array([[DARK, PALE]], np.uint8))[0, :, 0]
    floor = round(float((dark + pale) / 2), 4)
    task = config_lib.tiny().replace(task=dict(
        seg_threshold_grid=(0.5,), det_threshold_grid=(0.5,), det_sigma_grid=(1.0,),
        min_hematoxylin_grid=(0.0, floor))).task
    validation = task_validation.ValidationSet("synthetic", [image], [None], [truth])
    result = task_validation.grid_search(
        [{"segmentation": segmentation, "detection": detection}], validation, task)
    by_floor = {row[8]: row[4] for row in result["grid"]}
    assert result["thresholds"]["min_hematoxylin"] == floor
    assert by_floor[floor] > 0.95 and by_floor[0.0] < 0.6


def test_the_slide_path_hands_each_tile_its_image():
    image, labels = _scene()
    segmentation, detection = _maps(labels)
    dark, pale = stain.hed(np.array([[DARK, PALE]], np.uint8))[0, :, 0]
    thresholds = watershed.Thresholds(det_sigma=0, seg_threshold=0.5, det_threshold=0.5,
                                      min_hematoxylin=float((dark + pale) / 2))
    model = wsi_model.from_callable(
        lambda batch: (np.repeat(segmentation[None], len(batch), 0),
                       np.repeat(detection[None], len(batch), 0)), mpp=0.25,
        instances=functools.partial(watershed.instances_from_maps, thresholds=thresholds))
    np.testing.assert_array_equal(parity.direct_labels(model, image) > 0, labels == 1)
