"""The task loss against hand-computed values (targets, ROI, per-sample sums, weighting)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from simgan_histo import config as config_lib
from simgan_histo.training import task_loss

LOG2 = math.log(2.0)


def _mask_4x4():
    """Nucleus pixels in rows 1–2, cols 1–2; the centroid bit at (1, 1)."""
    mask = np.zeros((1, 4, 4), np.uint8)
    mask[0, 1:3, 1:3] = 1
    mask[0, 1, 1] |= 4
    mask[0, 3, :] = 2  # contour bits carry no target
    return mask


def test_targets_from_bits_and_dilated_centroid():
    targets = task_loss.targets_from_mask(tf.constant(_mask_4x4()), dilation=3).numpy()[0]
    segmentation = np.zeros((4, 4))
    segmentation[1:3, 1:3] = 1
    detection = np.zeros((4, 4))
    detection[0:3, 0:3] = 1  # 3×3 around (1, 1)
    np.testing.assert_array_equal(targets[..., 0], detection)
    np.testing.assert_array_equal(targets[..., 1], segmentation)


def test_centroid_without_nucleus_bit_is_still_a_detection_target():
    mask = np.zeros((1, 5, 5), np.uint8)
    mask[0, 2, 2] = 4 | 2
    targets = task_loss.targets_from_mask(tf.constant(mask), dilation=1).numpy()[0]
    assert targets[..., 0].sum() == 1 and targets[2, 2, 0] == 1
    assert targets[..., 1].sum() == 0


def test_roi_weight_map_border_fraction():
    roi = task_loss.roi_weight_map(8, 8, 0.25, 0.01).numpy()
    expected = np.full((8, 8), 0.01, np.float32)
    expected[2:6, 2:6] = 1.0
    np.testing.assert_allclose(roi, expected)
    # The release: 50 px of a 400 px patch.
    roi = task_loss.roi_weight_map(400, 400, 0.125, 0.01).numpy()
    assert roi[49, 200] == pytest.approx(0.01) and roi[50, 50] == 1.0 and roi[349, 349] == 1.0
    assert roi[350, 200] == pytest.approx(0.01)


def test_per_sample_loss_is_summed_over_pixels():
    logits = tf.zeros((2, 4, 4, 2))
    targets = task_loss.targets_from_mask(tf.constant(np.repeat(_mask_4x4(), 2, 0)))
    roi = tf.ones((4, 4))
    parts = task_loss.per_sample_loss(logits, targets, roi)
    # Zero logits: CE = log 2 for every pixel and head, whatever the target.
    np.testing.assert_allclose(parts["detection"].numpy(), [16 * LOG2] * 2, rtol=1e-6)
    np.testing.assert_allclose(parts["total"].numpy(), [32 * LOG2] * 2, rtol=1e-6)
    # With a 1 px border at weight 0.01: 4 inside pixels + 12 border pixels × 0.01.
    roi = task_loss.roi_weight_map(4, 4, 0.25, 0.01)
    parts = task_loss.per_sample_loss(logits, targets, roi)
    np.testing.assert_allclose(parts["total"].numpy(), [2 * 4.12 * LOG2] * 2, rtol=1e-6)


def test_cross_entropy_of_a_confident_wrong_pixel():
    logits = np.zeros((1, 1, 1, 2), np.float32)
    logits[0, 0, 0, 1] = -3.0  # segmentation says "background" for a nuclear pixel
    targets = tf.constant([[[[0.0, 1.0]]]])
    parts = task_loss.per_sample_loss(tf.constant(logits), targets, tf.ones((1, 1)))
    assert parts["segmentation"].numpy()[0] == pytest.approx(math.log1p(math.exp(3.0)), 1e-6)
    assert parts["detection"].numpy()[0] == pytest.approx(LOG2, 1e-6)


def test_importance_weights_scale_the_batch_loss_without_normalisation():
    per_sample = tf.constant([10.0, 30.0])
    assert float(task_loss.weighted_batch_loss(per_sample, [1.0, 1.0])) == pytest.approx(20.0)
    # (2·10 + 0.5·30) / 2 — a mean over the batch, not divided by Σw = 2.5.
    assert float(task_loss.weighted_batch_loss(per_sample, [2.0, 0.5])) == pytest.approx(17.5)
    # Halving every weight halves the loss (a Σw-normalised loss would not change).
    assert float(task_loss.weighted_batch_loss(per_sample, [0.5, 0.5])) == pytest.approx(10.0)


def test_weighted_task_loss_end_to_end():
    config = config_lib.TaskConfig(filters=(8, 16), convs_per_level=(1, 1), crop_size=4,
                                   roi_border_fraction=0.25, roi_border_weight=0.01)
    mask = tf.constant(np.repeat(_mask_4x4(), 2, 0))
    out = task_loss.weighted_task_loss(tf.zeros((2, 4, 4, 2)), mask, tf.constant([1.0, 3.0]),
                                       config)
    per_sample = 2 * 4.12 * LOG2
    assert float(out["loss"]) == pytest.approx((1.0 + 3.0) * per_sample / 2, rel=1e-6)
    assert float(out["segmentation"]) == pytest.approx(4.12 * LOG2, rel=1e-6)
    assert out["loss"].dtype == tf.float32


def test_bfloat16_logits_give_a_float32_loss():
    logits = tf.cast(tf.fill((1, 4, 4, 2), 0.5), tf.bfloat16)
    targets = tf.zeros((1, 4, 4, 2))
    parts = task_loss.per_sample_loss(logits, targets, tf.ones((4, 4)))
    expected = 32 * math.log1p(math.exp(0.5))
    assert parts["total"].dtype == tf.float32
    assert float(parts["total"][0]) == pytest.approx(expected, rel=1e-5)


def test_soft_dice_loss_by_hand():
    # roi: the 2×2 centre at weight 1, the 12 border pixels at 0.01 (Σ roi = 4.12); the
    # target is the centre. p = 0.5 everywhere: overlap 2, Σ roi·(p + t) = 2.06 + 4.
    roi = task_loss.roi_weight_map(4, 4, 0.25, 0.01)
    target = task_loss.targets_from_mask(tf.constant(_mask_4x4()))[..., 1]
    half = task_loss.soft_dice_loss(tf.zeros((1, 4, 4)), target, roi)
    assert float(half[0]) == pytest.approx(1.0 - 5.0 / 7.06, rel=1e-6)
    sure = task_loss.soft_dice_loss(tf.where(target > 0, 30.0, -30.0), target, roi)
    assert float(sure[0]) == pytest.approx(0.0, abs=1e-6)
    # An empty patch predicted empty costs nothing; predicted full, nearly everything.
    empty = tf.zeros((1, 4, 4))
    assert float(task_loss.soft_dice_loss(tf.fill((1, 4, 4), -30.0), empty, roi)[0]) == \
        pytest.approx(0.0, abs=1e-6)
    assert float(task_loss.soft_dice_loss(tf.fill((1, 4, 4), 30.0), empty, roi)[0]) == \
        pytest.approx(1.0 - 1.0 / 5.12, rel=1e-6)


def test_seg_dice_weight_adds_the_roi_scaled_dice_term_per_sample():
    config = config_lib.TaskConfig(filters=(8, 16), convs_per_level=(1, 1), crop_size=4,
                                   roi_border_fraction=0.25, roi_border_weight=0.01,
                                   seg_dice_weight=2.0)
    mask = tf.constant(np.repeat(_mask_4x4(), 2, 0))
    out = task_loss.weighted_task_loss(tf.zeros((2, 4, 4, 2)), mask, tf.constant([1.0, 3.0]),
                                       config)
    per_sample = 2 * 4.12 * LOG2 + 2.0 * 4.12 * (1.0 - 5.0 / 7.06)
    assert float(out["loss"]) == pytest.approx((1.0 + 3.0) * per_sample / 2, rel=1e-6)
    assert float(out["dice"]) == pytest.approx(1.0 - 5.0 / 7.06, rel=1e-6)
    assert "dice" not in task_loss.weighted_task_loss(
        tf.zeros((2, 4, 4, 2)), mask, tf.constant([1.0, 3.0]),
        config_lib.TaskConfig(filters=(8, 16), convs_per_level=(1, 1), crop_size=4))


def test_a_negative_seg_dice_weight_is_refused():
    with pytest.raises(ValueError, match="seg_dice_weight"):
        config_lib.TaskConfig(seg_dice_weight=-1.0)
