"""Does the refiner do its job? Realism and label preservation of refined patches (issue 6).

- Realism: the sliced Wasserstein distance (SWD) between the distributions of 7×7 LAB
  neighbourhoods of two patch sets, after Karras et al. 2018 (progressive GAN), with two
  changes: one scale only, and no per-set normalisation of the descriptors (that would
  cancel exactly the colour shifts we want to see). Units are those of OpenCV's float LAB
  (L 0..100, a and b about ±127), so a pure colour shift t moves the distance by the mean
  |projection of t|. Refined patches should be closer to real crops of the same tiles than
  the initial (GAN-free) patches are.
- Labels survive: Otsu on the hematoxylin channel of a patch should still find its nuclei,
  i.e. Dice(mask, Otsu-on-H(refined)) should not fall much below that of the initial patch.
- Mean |Δ|: how far the refiner moved the pixels, in grey levels.

Every function is numpy only (no TensorFlow), deterministic given its seed.
"""

from typing import Dict, Optional, Sequence

import numpy as np
from skimage import filters

from simgan_histo import patch_file
from simgan_histo import stain

NEIGHBOURHOOD = 7  # Karras et al.: 7×7 neighbourhoods
PROJECTIONS = 512  # Karras et al.: 512 random directions


def lab_neighbourhoods(images: np.ndarray, per_image: int, rng: np.random.Generator,
                       size: int = NEIGHBOURHOOD) -> np.ndarray:
    """`per_image` random size×size LAB neighbourhoods of each image, flattened.

    Args:
      images: (N, H, W, 3) uint8 RGB.
      per_image: neighbourhoods drawn per image (positions uniform, with replacement).
      rng: the position generator; two sets drawn with equal generators share positions.
      size: neighbourhood side, px.

    Returns:
      (N·per_image, size·size·3) float32.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    count, height, width = images.shape[:3]
    if height < size or width < size:
        raise ValueError(f"images of {height}×{width} px are smaller than {size}×{size}")
    ys = rng.integers(0, height - size + 1, (count, per_image))
    xs = rng.integers(0, width - size + 1, (count, per_image))
    offsets = np.arange(size)
    out = np.empty((count, per_image, size, size, 3), np.float32)
    for i, image in enumerate(images):
        lab = stain.to_lab(image)
        rows = ys[i][:, None, None] + offsets[None, :, None]
        cols = xs[i][:, None, None] + offsets[None, None, :]
        out[i] = lab[rows, cols]
    return out.reshape(count * per_image, -1)


def random_directions(dimension: int, count: int, seed: int) -> np.ndarray:
    """`count` unit vectors uniform on the sphere of R^dimension, as (dimension, count)."""
    directions = np.random.default_rng(seed).standard_normal((dimension, count))
    return directions / np.linalg.norm(directions, axis=0, keepdims=True)


def _quantiles(projected: np.ndarray, levels: int) -> np.ndarray:
    ordered = np.sort(projected, axis=0)
    if len(ordered) == levels:
        return ordered
    positions = (np.arange(levels) + 0.5) / levels * len(ordered) - 0.5
    return np.stack([np.interp(positions, np.arange(len(ordered)), column)
                     for column in ordered.T], axis=1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Sliced 1-Wasserstein distance between the point sets `a` (N, D) and `b` (M, D).

    The mean over the columns of `directions` (D, P) of the 1-D Wasserstein-1 distance
    between the projected sets; with N ≠ M the larger set is read at the smaller one's
    quantile levels.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] != len(directions):
        raise ValueError(f"sets {a.shape} and {b.shape} and directions {directions.shape} "
                         "do not agree on the dimension")
    if not len(a) or not len(b):
        raise ValueError("sliced_wasserstein: an empty set")
    levels = min(len(a), len(b))
    qa = _quantiles(a @ directions, levels)
    qb = _quantiles(b @ directions, levels)
    return float(np.mean(np.abs(qa - qb)))


def realism_distance(images: np.ndarray, real: np.ndarray, seed: int = 0,
                     per_image: int = 64, projections: int = PROJECTIONS) -> float:
    """SWD between the 7×7 LAB neighbourhoods of `images` and of `real` (both uint8 RGB).

    The positions and directions depend only on `seed` and the sets' shapes, so two image
    sets of equal shape (e.g. initial and refined patches) are scored against the same
    `real` set on equal terms, and identical sets are at distance 0.
    """
    ours = lab_neighbourhoods(images, per_image, np.random.default_rng(seed))
    theirs = lab_neighbourhoods(real, per_image, np.random.default_rng(seed))
    return sliced_wasserstein(ours, theirs, random_directions(ours.shape[1], projections, seed))


def otsu_h_dice(image: np.ndarray, mask: np.ndarray) -> float:
    """Dice between Otsu-thresholded hematoxylin of `image` and the nucleus bit of `mask`."""
    hematoxylin = stain.hed(image)[..., 0]
    truth = (np.asarray(mask) & patch_file.MASK_NUCLEUS) > 0
    if hematoxylin.max() > hematoxylin.min():
        predicted = hematoxylin > filters.threshold_otsu(hematoxylin)
    else:
        predicted = np.zeros_like(truth)
    denominator = int(predicted.sum()) + int(truth.sum())
    return float(2.0 * (predicted & truth).sum() / denominator) if denominator else 1.0


def mean_abs_delta(initial: np.ndarray, refined: np.ndarray) -> float:
    """Mean |refined − initial| over every pixel and channel, in grey levels (0..255)."""
    return float(np.mean(np.abs(np.asarray(refined, np.float64) - np.asarray(initial,
                                                                               np.float64))))


def real_crops(tiles: Sequence, tile_indices: Sequence[int], size: int,
               rng: np.random.Generator) -> np.ndarray:
    """One random size×size crop of `tiles[k].rgb` for each k in `tile_indices`."""
    crops = []
    for k in tile_indices:
        rgb = tiles[int(k)].rgb
        y = rng.integers(0, rgb.shape[0] - size + 1)
        x = rng.integers(0, rgb.shape[1] - size + 1)
        crops.append(rgb[y:y + size, x:x + size])
    return np.stack(crops)


def evaluate(initial: np.ndarray, refined: np.ndarray, masks: np.ndarray, real: np.ndarray,
             real_again: Optional[np.ndarray] = None, seed: int = 0,
             per_image: int = 64) -> Dict[str, float]:
    """The three checks on (initial, refined, mask) triples against real crops.

    Args:
      initial, refined: (N, H, W, 3) uint8, the GAN-free patches and G's outputs.
      masks: (N, H, W) uint8 with the release bits.
      real: (M, H, W, 3) uint8 real crops of the same tissue tiles.
      real_again: optional second, independent set of real crops: its distance to `real`
        is the floor a perfect refiner would reach with these sample sizes.
      seed: positions and directions of the SWD.
      per_image: neighbourhoods per image.

    Returns:
      swd_initial, swd_refined, swd_real_floor (if real_again), swd_reduction (1 −
      refined/initial), dice_initial, dice_refined (means over patches), dice_ratio,
      mean_abs_delta.
    """
    if initial.shape != refined.shape:
        raise ValueError(f"initial {initial.shape} and refined {refined.shape} differ")
    swd_initial = realism_distance(initial, real, seed, per_image)
    swd_refined = realism_distance(refined, real, seed, per_image)
    dice_initial = float(np.mean([otsu_h_dice(x, m) for x, m in zip(initial, masks)]))
    dice_refined = float(np.mean([otsu_h_dice(x, m) for x, m in zip(refined, masks)]))
    result = {"swd_initial": swd_initial, "swd_refined": swd_refined,
              "swd_reduction": 1.0 - swd_refined / swd_initial if swd_initial else 0.0,
              "dice_initial": dice_initial, "dice_refined": dice_refined,
              "dice_ratio": dice_refined / dice_initial if dice_initial else 0.0,
              "mean_abs_delta": mean_abs_delta(initial, refined)}
    if real_again is not None:
        result["swd_real_floor"] = realism_distance(real_again, real, seed, per_image)
    return result
