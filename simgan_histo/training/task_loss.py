"""The task net's loss (DESIGN §1.4–1.5; release `model.py::_build_loss`), as pure functions.

Targets come from the release bit mask (1 nucleus, 2 contour, 4 centroid):
segmentation = bit 1; detection = bit 4 dilated with a k×k square (release: 3×3), or, with
`TaskConfig.detection_target="core"`, the nucleus cores of bit 8, or with "distance", the
soft inner-distance target of bits 16–128 (`detection_target.py`).
Per sample:  L_i = Σ_pixels roi · CE(seg) + Σ_pixels roi · CE(det)  (sigmoid cross-entropy),
with roi = 1 inside and `roi_border_weight` (release 0.01) in a border that is a fraction
of the patch side (release: 50 px of 400 = 0.125).
With `TaskConfig.hv_head`, L_i gains hv_weight · (Σ roi · (ĥv − hv)² + hv_gradient_weight ·
Σ roi · nucleus · (slope error)²), slopes by the Sobel operator of `hv_target` (HoVer-Net's
MSE + MSGE, as sums over pixels like the cross-entropies).
With `TaskConfig.seg_dice_weight` > 0, L_i gains seg_dice_weight · Σ roi · (1 − soft Dice of
the segmentation head) (HoVer-Net's CE + Dice, in the same per-pixel units).
Batch:  L = (1/B) Σ_i w_i · L_i — a mean, deliberately NOT normalised by Σ w_i (that would
cancel the constant c of Eq. 5). Real labeled samples have w_i = 1.
Losses are computed in float32 whatever the compute precision.
"""

import tensorflow as tf

from simgan_histo.patch_file import MASK_CENTROID, MASK_NUCLEUS
from simgan_histo.training import hv_target
from simgan_histo.training.detection_target import DISTANCE_LEVELS, DISTANCE_SHIFT, MASK_CORE

DETECTION, SEGMENTATION = 0, 1  # logit channels (models/unet.py)


def targets_from_mask(mask, dilation: int = 3, target: str = "centroid"):
    """Segmentation and detection targets from a (B, H, W) bit mask.

    Args:
      mask: integer (B, H, W) release bit mask (with bit 8 for target "core", bits 16–128
        for "distance").
      dilation: side of the square structuring element applied to the centroid bit.
      target: "centroid" (release: the dilated centroid bit), "core" (bit 8 as it is) or
        "distance" (bits 16–128 ÷ DISTANCE_LEVELS, a soft target in [0, 1]).

    Returns:
      float32 (B, H, W, 2): channel 0 detection, channel 1 segmentation.
    """
    mask = tf.cast(mask, tf.int32)
    segmentation = tf.cast(tf.bitwise.bitwise_and(mask, MASK_NUCLEUS) > 0, tf.float32)
    if target == "core":
        detection = tf.cast(tf.bitwise.bitwise_and(mask, MASK_CORE) > 0, tf.float32)
    elif target == "distance":
        levels = tf.bitwise.right_shift(mask, DISTANCE_SHIFT) % (DISTANCE_LEVELS + 1)
        detection = tf.cast(levels, tf.float32) / DISTANCE_LEVELS
    else:
        centroid = tf.cast(tf.bitwise.bitwise_and(mask, MASK_CENTROID) > 0, tf.float32)
        detection = tf.nn.max_pool2d(centroid[..., None], dilation, 1, "SAME")[..., 0]
    return tf.stack([detection, segmentation], axis=-1)


def roi_weight_map(height: int, width: int, border_fraction: float, border_weight: float):
    """(H, W) float32: 1 inside, `border_weight` within round(fraction · side) px of an edge."""
    border_y = int(round(border_fraction * height))
    border_x = int(round(border_fraction * width))
    rows = tf.range(height)
    cols = tf.range(width)
    inside_y = (rows >= border_y) & (rows < height - border_y)
    inside_x = (cols >= border_x) & (cols < width - border_x)
    inside = inside_y[:, None] & inside_x[None, :]
    return tf.where(inside, 1.0, float(border_weight))


def per_sample_loss(logits, targets, roi):
    """Σ over pixels of roi · sigmoid CE, per head and sample.

    Args:
      logits: (B, H, W, 2) logits, channel 0 detection, 1 segmentation.
      targets: (B, H, W, 2) {0, 1} targets in the same channel order.
      roi: (H, W) pixel weights.

    Returns:
      dict of float32 (B,) tensors: `detection`, `segmentation` and their sum `total`.
    """
    logits = tf.cast(logits, tf.float32)
    entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    summed = tf.reduce_sum(entropy * roi[None, :, :, None], axis=[1, 2])
    detection, segmentation = summed[:, DETECTION], summed[:, SEGMENTATION]
    return {"detection": detection, "segmentation": segmentation,
            "total": detection + segmentation}


def soft_dice_loss(logits, targets, roi, smooth: float = 1.0):
    """(B,) 1 − soft Dice of sigmoid(logits) against {0, 1} targets, roi-weighted:
    1 − (2 Σ roi·p·t + smooth) / (Σ roi·p + Σ roi·t + smooth). (B, H, W) inputs; the
    smoothing keeps an empty patch's loss finite and pushes its p towards 0."""
    probability = tf.sigmoid(tf.cast(logits, tf.float32))
    weight = roi[None]
    overlap = tf.reduce_sum(weight * probability * targets, axis=[1, 2])
    total = tf.reduce_sum(weight * (probability + targets), axis=[1, 2])
    return 1.0 - (2.0 * overlap + smooth) / (total + smooth)


def _slopes(maps):
    """(B, H, W, 2): d(horizontal)/dcolumn and d(vertical)/drow, Sobel ÷ 8, zero-padded."""
    kernels = tf.constant(hv_target.sobel_kernels())
    along_cols = tf.nn.conv2d(maps[..., :1], kernels[..., :1], 1, "SAME")
    along_rows = tf.nn.conv2d(maps[..., 1:], kernels[..., 1:], 1, "SAME")
    return tf.concat([along_cols, along_rows], axis=-1)


def hv_per_sample_loss(predicted, target, nucleus, roi, gradient_weight: float):
    """Σ roi · squared error of the maps + gradient_weight · Σ roi · nucleus · slope error².

    Args:
      predicted, target: (B, H, W, 2) horizontal and vertical maps.
      nucleus: (B, H, W) {0, 1} nuclear pixels (where the slopes are fitted).
      roi: (H, W) pixel weights.

    Returns:
      float32 (B,).
    """
    predicted, target = tf.cast(predicted, tf.float32), tf.cast(target, tf.float32)
    weight = roi[None, :, :, None]
    squared = tf.reduce_sum(tf.square(predicted - target) * weight, axis=[1, 2, 3])
    slope_error = tf.square(_slopes(predicted) - _slopes(target))
    gradient = tf.reduce_sum(slope_error * weight * nucleus[..., None], axis=[1, 2, 3])
    return squared + gradient_weight * gradient


def weighted_batch_loss(per_sample, sample_weight):
    """(1/B) Σ_i w_i · L_i — the mean, not normalised by Σ w (DESIGN §1.5)."""
    per_sample = tf.cast(per_sample, tf.float32)
    return tf.reduce_mean(tf.cast(sample_weight, tf.float32) * per_sample)


def weighted_task_loss(logits, mask, sample_weight, config, hv=None, hv_true=None):
    """The whole task loss from logits and bit masks (the task trainer and its validation
    loss; the GAN's L_hard and task steps use `per_sample_loss`, so no Dice term).

    Args:
      logits: (B, H, W, 2) task-net logits.
      mask: (B, H, W) release bit masks.
      sample_weight: (B,) importance weights (1 for real samples and unrefined patches).
      config: TaskConfig (roi_border_fraction, roi_border_weight, detection_dilation,
        detection_target, hv_weight, hv_gradient_weight).
      hv, hv_true: (B, H, W, 2) predicted and target hv maps, or None (no hv term; L_hard
        never has one).

    Returns:
      dict of float32 scalars: `loss` (weighted mean), and the unweighted batch means
      `detection`, `segmentation`, with hv maps `hv`, and with `seg_dice_weight` the mean
      soft-Dice loss `dice`.
    """
    targets = targets_from_mask(mask, config.detection_dilation, config.detection_target)
    height, width = mask.shape[1], mask.shape[2]
    if height is None or width is None:
        raise ValueError("weighted_task_loss needs static H and W (crop to a fixed size)")
    roi = roi_weight_map(height, width, config.roi_border_fraction, config.roi_border_weight)
    parts = per_sample_loss(logits, targets, roi)
    total = parts["total"]
    out = {"detection": tf.reduce_mean(parts["detection"]),
           "segmentation": tf.reduce_mean(parts["segmentation"])}
    if config.seg_dice_weight > 0:
        dice = soft_dice_loss(logits[..., SEGMENTATION], targets[..., SEGMENTATION], roi)
        total = total + config.seg_dice_weight * tf.reduce_sum(roi) * dice
        out["dice"] = tf.reduce_mean(dice)
    if (hv is None) != (hv_true is None):
        raise ValueError("weighted_task_loss: give both hv and hv_true, or neither")
    if hv is not None:
        hv_part = config.hv_weight * hv_per_sample_loss(
            hv, hv_true, targets[..., SEGMENTATION], roi, config.hv_gradient_weight)
        total = total + hv_part
        out["hv"] = tf.reduce_mean(hv_part)
    out["loss"] = weighted_batch_loss(total, sample_weight)
    return out
