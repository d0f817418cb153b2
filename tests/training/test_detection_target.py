"""Cores and inner distance as detection targets: hand-drawn instances, loss targets, batches."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from simgan_histo import config as config_lib
from simgan_histo import patch_file
from simgan_histo.training import detection_target
from simgan_histo.training import task_data
from simgan_histo.training import task_loss
from tests.training import toy_data


def _two_touching_squares():
    labels = np.zeros((12, 20), np.uint16)
    labels[2:9, 2:9] = 1  # 7×7
    labels[2:9, 9:18] = 2  # 7×9, touching id 1 along column 8|9
    return labels


def test_touching_nuclei_keep_separate_cores():
    core = detection_target.core_map(_two_touching_squares())
    # 7×7: outline distance 1 at the rim, 4 at the centre; > 2 leaves the central 3×3.
    expected = np.zeros((12, 20), bool)
    expected[4:7, 4:7] = True
    expected[4:7, 11:16] = True  # 7×9: the central 3×5
    np.testing.assert_array_equal(core, expected)
    count, _ = cv2.connectedComponents(core.astype(np.uint8), connectivity=8)
    assert count - 1 == 2


def test_core_grows_with_the_nucleus():
    areas = []
    for radius in (4, 8, 16):
        labels = np.zeros((40, 40), np.uint16)
        cv2.circle(labels, (20, 20), radius, 1, -1)
        core = detection_target.core_map(labels)
        assert core[20, 20] and not core[20, 20 + radius]
        areas.append(core.sum() / (labels > 0).sum())
    # A disc's inner half-radius is a quarter of its area; pixels make small discs coarser.
    assert all(0.15 < share < 0.45 for share in areas), areas
    assert abs(areas[-1] - 0.25) < 0.05


def test_a_one_pixel_nucleus_is_its_own_core():
    labels = np.zeros((5, 5), np.uint16)
    labels[2, 2] = 7
    np.testing.assert_array_equal(detection_target.core_map(labels), labels > 0)


def test_with_target_sets_bit_8_only_for_the_core_target():
    labels = _two_touching_squares()
    masks = np.where(labels > 0, 1, 0).astype(np.uint8)
    assert detection_target.with_target(masks, labels, "centroid") is masks
    out = detection_target.with_target(np.stack([masks] * 2), np.stack([labels] * 2), "core")
    np.testing.assert_array_equal(out[1] & 7, masks)
    np.testing.assert_array_equal(out[0] & 8 > 0, detection_target.core_map(labels))
    with pytest.raises(ValueError, match="detection target"):
        detection_target.with_target(masks, labels, "blob")
    with pytest.raises(ValueError, match="differ"):
        detection_target.with_target(masks, labels[:5], "core")


def test_loss_target_reads_the_core_bit():
    mask = np.zeros((1, 5, 5), np.uint8)
    mask[0, 1:4, 1:4] = 1
    mask[0, 2, 2] |= 4 | 8
    mask[0, 1, 2] |= 8
    targets = task_loss.targets_from_mask(tf.constant(mask), dilation=3, target="core")
    detection = np.zeros((5, 5))
    detection[2, 2] = detection[1, 2] = 1  # bit 8 as it is, not the dilated centroid
    np.testing.assert_array_equal(targets.numpy()[0, ..., 0], detection)


def test_inner_distance_peaks_at_each_centre_with_a_valley_where_nuclei_touch():
    labels = _two_touching_squares()
    levels = detection_target.distance_levels(labels)
    assert levels.dtype == np.uint8
    np.testing.assert_array_equal(levels == 0, labels == 0)
    # 7 rows: outline distance 1 at the rim, 4 at the centre row -> 15 · d / 4.
    np.testing.assert_array_equal(levels[5, 2:18],
                                  [4, 8, 11, 15, 11, 8, 4, 4, 8, 11, 15, 15, 15, 11, 8, 4])
    np.testing.assert_array_equal(levels[2:9, 5], [4, 8, 11, 15, 11, 8, 4])


def test_inner_distance_is_scaled_to_each_nucleus():
    for radius in (4, 16):
        labels = np.zeros((40, 40), np.uint16)
        cv2.circle(labels, (20, 20), radius, 1, -1)
        levels = detection_target.distance_levels(labels)
        assert levels[20, 20] == detection_target.DISTANCE_LEVELS
        assert levels[20, 20 + radius] <= 4  # the rim, whatever the size
        # Halfway out, about half the peak.
        assert abs(int(levels[20, 20 + radius // 2]) - 8) <= 2


def test_with_target_puts_the_distance_in_the_high_bits_and_the_loss_reads_it():
    labels = _two_touching_squares()
    masks = task_data.instances_to_bits(labels)
    out = detection_target.with_target(masks, labels, "distance")
    np.testing.assert_array_equal(out & 15, masks)
    np.testing.assert_array_equal(out >> 4, detection_target.distance_levels(labels))
    targets = task_loss.targets_from_mask(tf.constant(out[None]), dilation=3,
                                          target="distance").numpy()[0]
    np.testing.assert_allclose(targets[..., 0], detection_target.distance_levels(labels) / 15,
                               atol=1e-7)
    np.testing.assert_array_equal(targets[..., 1], labels > 0)


def test_the_touching_line_is_one_pixel_on_one_side_of_the_border():
    labels = _two_touching_squares()
    expected = np.zeros(labels.shape, bool)
    expected[2:9, 8] = True  # id 1's column next to id 2
    np.testing.assert_array_equal(detection_target.touching_line(labels), expected)
    alone = np.zeros((9, 9), np.uint16)
    alone[2:7, 2:7] = 3
    assert not detection_target.touching_line(alone).any()  # background is not a neighbour


def test_task_mask_clears_the_nucleus_bit_on_the_touching_line_only():
    labels = _two_touching_squares()
    masks = task_data.instances_to_bits(labels)
    task = config_lib.TaskConfig(separate_touching=True)
    assert detection_target.needs_labels(task)
    assert not detection_target.needs_labels(config_lib.TaskConfig())
    out = detection_target.task_mask(np.stack([masks] * 2), np.stack([labels] * 2), task)
    line = detection_target.touching_line(labels)
    np.testing.assert_array_equal(out[1] & 1, (labels > 0) & ~line)
    np.testing.assert_array_equal(out[0] & 6, masks & 6)  # contour and centroid bits kept
    seg = task_loss.targets_from_mask(tf.constant(out[:1]), 3).numpy()[0, ..., 1]
    assert seg[5, 8] == 0 and seg[5, 7] == 1 and seg[5, 9] == 1  # the valley


def test_config_checks_the_target():
    with pytest.raises(ValueError, match="detection_target"):
        config_lib.TaskConfig(detection_target="peaks")
    with pytest.raises(ValueError, match="core_fraction"):
        config_lib.TaskConfig(core_fraction=1.0)
    with pytest.raises(ValueError, match="flood_on_grid"):
        config_lib.TaskConfig(flood_on_grid=("contour",))
    with pytest.raises(ValueError, match="flood_on"):
        config_lib.TaskConfig(flood_on="contour")


def test_batches_carry_the_cores_of_their_patches(tmp_path):
    path = toy_data.write_patch_file(tmp_path / "toy.h5", count=6)
    files = task_data.PatchFiles([path], 0.0, 64, seed=0)
    base = dict(batch_size=3, validation_fraction=0.0)
    centroid = config_lib.tiny().replace(task=base).task
    core = config_lib.tiny().replace(task=dict(base, detection_target="core")).task
    plain = task_data.TaskBatches(centroid, files, seed=3).batch(2)
    cored = task_data.TaskBatches(core, files, seed=3).batch(2)
    np.testing.assert_array_equal(plain["image"], cored["image"])
    np.testing.assert_array_equal(cored["mask"] & 7, plain["mask"])
    assert not (plain["mask"] & 8).any()
    inside = cored["mask"] & 8 > 0
    assert inside.any() and (cored["mask"][inside] & 1).all()


def test_batches_carry_the_separated_segmentation_target(tmp_path):
    labels = np.zeros((64, 64), np.uint16)
    for index, left in enumerate(range(0, 64, 8)):
        labels[:, left:left + 8] = index + 1  # eight touching stripes: seven borders
    with patch_file.PatchWriter(tmp_path / "stripes.h5", 64, 2, config_json="{}") as writer:
        for _ in range(2):
            writer.append({"image": np.full((1, 64, 64, 3), 128, np.uint8),
                           "reference": np.full((1, 64, 64, 3), 128, np.uint8),
                           "mask": task_data.instances_to_bits(labels)[None],
                           "labels": labels[None], "source": np.zeros(1, np.int32),
                           "weight": np.ones(1, np.float32), "step": np.full(1, -1, np.int64)})
    files = task_data.PatchFiles([tmp_path / "stripes.h5"], 0.0, 64, seed=0)
    base = dict(batch_size=2, validation_fraction=0.0)
    plain = task_data.TaskBatches(config_lib.tiny().replace(task=base).task, files,
                                  seed=3).batch(2)
    separated = task_data.TaskBatches(
        config_lib.tiny().replace(task=dict(base, separate_touching=True)).task, files,
        seed=3).batch(2)
    np.testing.assert_array_equal(plain["image"], separated["image"])
    np.testing.assert_array_equal(separated["mask"] & 6, plain["mask"] & 6)
    before, after = plain["mask"] & 1 > 0, separated["mask"] & 1 > 0
    assert not (after & ~before).any()  # only clears
    crop = plain["mask"].shape[1]
    # Each crop holds whole 1-px lines, one per 8 px (crops, flips and turns move them).
    assert (before & ~after).sum() == pytest.approx(2 * crop * crop / 8, rel=0.3)
