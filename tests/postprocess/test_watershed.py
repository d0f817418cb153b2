"""Marker watershed: touching nuclei separated, seed recall, holes, areas, settings."""

import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.evaluation import metrics
from simgan_histo.postprocess import watershed


def _disk(shape, centre, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def _touching_disks(shape=(64, 80)):
    """Two disks of radius 10 overlapping by 4 px, their seg/det maps and true instances."""
    centres = [(32, 30), (32, 46)]
    union = _disk(shape, centres[0], 10) | _disk(shape, centres[1], 10)
    cols = np.arange(shape[1])[None, :]
    truth = np.where(union, np.where(cols < 38, 1, 2), 0)  # split at the bisector x = 38
    seg = union.astype(np.float32)
    det = (_disk(shape, centres[0], 2) | _disk(shape, centres[1], 2)).astype(np.float32)
    return seg, det, truth


def test_separates_two_touching_disks():
    seg, det, truth = _touching_disks()
    labels = watershed.instances_from_maps(seg, det)
    assert labels.dtype == np.uint32
    assert sorted(np.unique(labels)) == [0, 1, 2]
    scores = metrics.image_metrics(truth, labels)
    assert scores["tp"] == 2 and scores["aji"] > 0.9
    # Without the detection map, the union is one seed-recalled instance.
    merged = watershed.instances_from_maps(seg, np.zeros_like(det))
    assert sorted(np.unique(merged)) == [0, 1]


def test_seed_recall_gives_unseeded_foreground_an_instance():
    shape = (40, 80)
    seg = (_disk(shape, (20, 15), 8) | _disk(shape, (20, 60), 8)).astype(np.float32)
    # A peak of the segmentation map inside the unseeded blob: the recalled seed sits there.
    seg[20, 60] = 1.0
    seg[_disk(shape, (20, 60), 8) & ~_disk(shape, (20, 60), 0)] = 0.9
    det = _disk(shape, (20, 15), 2).astype(np.float32)
    labels = watershed.instances_from_maps(seg, det)
    assert len(np.unique(labels)) == 3
    assert labels[20, 15] != labels[20, 60] and labels[20, 60] > 0
    assert np.sum(labels == labels[20, 60]) == np.sum(_disk(shape, (20, 60), 8))


def test_seeded_blob_gets_no_extra_recalled_seed():
    seg = _disk((40, 40), (20, 20), 9).astype(np.float32)
    det = _disk((40, 40), (20, 20), 2).astype(np.float32)
    assert len(np.unique(watershed.instances_from_maps(seg, det))) == 2


def test_holes_inside_one_instance_are_filled():
    ring = _disk((40, 40), (20, 20), 10) & ~_disk((40, 40), (20, 20), 3)
    det = np.zeros((40, 40), np.float32)
    det[12:15, 19:22] = 1.0  # seed on the ring
    labels = watershed.instances_from_maps(ring.astype(np.float32), det)
    assert labels[20, 20] == labels[12, 20] == 1
    assert np.sum(labels == 1) == np.sum(_disk((40, 40), (20, 20), 10))


def test_fill_instance_holes_leaves_gaps_between_two_instances():
    labels = np.zeros((7, 9), np.uint32)
    labels[1:6, 1:4], labels[1:6, 5:8] = 1, 2
    labels[1, 4], labels[5, 4] = 1, 2  # the gap column is enclosed by both
    labels[3, 2] = 0  # a hole inside instance 1
    filled = watershed.fill_instance_holes(labels)
    assert filled[3, 2] == 1
    assert (filled[2:5, 4] == 0).all()


def test_area_limits_and_consecutive_ids():
    shape = (50, 50)
    seg = (_disk(shape, (10, 10), 2) | _disk(shape, (30, 30), 6)).astype(np.float32)
    det = (_disk(shape, (10, 10), 1) | _disk(shape, (30, 30), 1)).astype(np.float32)
    labels = watershed.instances_from_maps(seg, det)  # the 13-px disk is < min 20 px
    assert sorted(np.unique(labels)) == [0, 1] and labels[30, 30] == 1
    small = watershed.Thresholds(min_area_px=0, max_area_px=50)
    labels = watershed.instances_from_maps(seg, det, small)  # now the 113-px one is too big
    assert sorted(np.unique(labels)) == [0, 1] and labels[10, 10] == 1


def test_empty_maps_and_trailing_channel_axis():
    zeros = np.zeros((16, 16, 1), np.float32)
    labels = watershed.instances_from_maps(zeros, zeros)
    assert labels.shape == (16, 16) and not labels.any()


def test_bad_maps_raise():
    with pytest.raises(ValueError, match="one shape"):
        watershed.instances_from_maps(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        watershed.instances_from_maps(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))


def test_thresholds_defaults_json_and_validation():
    release = watershed.Thresholds()
    assert (release.seg_threshold, release.det_threshold, release.det_sigma,
            release.seg_sigma, release.min_area_px, release.compactness) == (
                0.33, 0.07, 1.0, 0.5, 20, 1.0)
    assert watershed.Thresholds.from_task_config(config_lib.TaskConfig()) == release
    assert watershed.Thresholds.from_json(release.to_json()) == release
    assert watershed.Thresholds.from_json({"seg_threshold": 0.5}).det_threshold == 0.07
    assert release.replace(seg_threshold=0.4, det_threshold=None).seg_threshold == 0.4
    with pytest.raises(ValueError, match="unknown key"):
        watershed.Thresholds.from_json({"seg_thresh": 0.5})
    with pytest.raises(ValueError, match="seg_threshold"):
        watershed.Thresholds(seg_threshold=1.5)
    with pytest.raises(ValueError, match="max_area_px"):
        watershed.Thresholds(min_area_px=30, max_area_px=10)
