"""Figures of the label-free reproduction, written as PNG files (issue 9).

- `refinement_figure`: the paper's Fig. 6 analog. The same initial synthetic patches, each
  refined once per reference patch from a different tissue, so the reference's effect is
  visible along a row.
- `importance_figure`: the paper's Fig. 7 analog. The distribution of the importance
  weights w = c·p/(1 − p), with the clip bounds marked, and the highest- and lowest-weighted
  refined patches.
- `overlay`: truth (green) and predicted (magenta) instance outlines on a test image.

numpy, OpenCV and matplotlib only (no TensorFlow): the caller refines or predicts.
"""

import pathlib
from typing import Dict, Mapping, Sequence, Tuple

import cv2
import numpy as np
from skimage import segmentation

from simgan_histo.evaluation import predict_lib

TRUTH_RGB = (0, 255, 0)
PREDICTION_RGB = (255, 0, 255)


def write_png(path, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 image atomically (a temporary file, then a rename)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path} ({rgb.shape} {rgb.dtype})")
    predict_lib.atomic_write(pathlib.Path(path), lambda tmp: pathlib.Path(tmp).write_bytes(
        encoded.tobytes()), ".png")


def image_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 4, fill: int = 255) -> np.ndarray:
    """Equal-sized RGB uint8 tiles laid out row by row, `gap` px of `fill` between them."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3), fill,
                   np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (height, width):
                raise ValueError(f"tile ({r}, {c}) is {tile.shape[:2]}, expected {(height, width)}")
            y, x = r * (height + gap), c * (width + gap)
            grid[y:y + height, x:x + width] = tile
    return grid


def refinement_figure(path, initial: np.ndarray, references: np.ndarray,
                      refined: np.ndarray) -> np.ndarray:
    """Fig. 6 analog: a header row of references, then per initial patch: initial | refined
    with each reference.

    Args:
      initial: (K, H, W, 3) uint8 initial synthetic patches.
      references: (M, H, W, 3) uint8 real reference patches, one per tissue.
      refined: (K, M, H, W, 3) uint8; refined[i, j] = refiner(initial[i], references[j]).
    """
    count, tissues = refined.shape[:2]
    if initial.shape[0] != count or references.shape[0] != tissues:
        raise ValueError(f"refined {refined.shape[:2]} does not match {len(initial)} initial "
                         f"and {len(references)} reference patches")
    blank = np.full_like(initial[0], 255)
    rows = [[blank] + list(references)]
    rows += [[initial[i]] + list(refined[i]) for i in range(count)]
    grid = image_grid(rows)
    write_png(path, grid)
    return grid


def extremes(weights: np.ndarray, count: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of the `count` highest (descending) and lowest (ascending) weights; ties by
    index, so the choice is deterministic."""
    order = np.lexsort((np.arange(len(weights)), weights))
    count = min(count, len(weights))
    return order[::-1][:count], order[:count]


def importance_figure(path, weights: np.ndarray, images,
                      clip: Tuple[float, float], count: int = 6) -> Dict[str, float]:
    """Fig. 7 analog: histogram of the weights and the `count` highest/lowest-weighted patches.

    Args:
      images: patch images indexable by patch index (an array, or a {index: image} dict
        holding at least the `extremes(weights, count)`).

    Returns the figures drawn in it: mean, median and the shares at each clip bound.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    weights = np.asarray(weights, np.float64)
    low, high = clip
    stats = {"n": int(len(weights)), "mean": float(weights.mean()),
             "median": float(np.median(weights)),
             "at_low": float(np.mean(np.isclose(weights, low))),
             "at_high": float(np.mean(np.isclose(weights, high)))}
    top, bottom = extremes(weights, count)
    figure = pyplot.figure(figsize=(2 * max(count, 3), 8), dpi=100)
    grid = figure.add_gridspec(3, max(count, 1), height_ratios=(2, 1, 1))
    axis = figure.add_subplot(grid[0, :])
    axis.hist(weights, bins=40, range=(min(low, weights.min()), max(high, weights.max())),
              color="0.4")
    for bound in clip:
        axis.axvline(bound, color="red", linestyle="--", linewidth=1)
    axis.set_xlabel("importance weight w = c·p/(1−p), clipped")
    axis.set_ylabel("patches")
    axis.set_title(f"{stats['n']} refined patches: mean {stats['mean']:.2f}, median "
                   f"{stats['median']:.2f}, {100 * stats['at_low']:.1f} % at {low}, "
                   f"{100 * stats['at_high']:.1f} % at {high}")
    for row, (label, indices) in enumerate((("highest", top), ("lowest", bottom)), start=1):
        for column, index in enumerate(indices):
            panel = figure.add_subplot(grid[row, column])
            panel.imshow(images[index])
            panel.set_title(f"{label} w={weights[index]:.2f}", fontsize=9)
            panel.axis("off")
    figure.tight_layout()
    try:
        predict_lib.atomic_write(pathlib.Path(path), figure.savefig, ".png")
    finally:
        pyplot.close(figure)
    return stats


def overlay(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """RGB uint8 copy of `image` with the inner outlines of the truth instances in green and
    of the predicted instances in magenta (drawn last, so it wins where they coincide)."""
    out = np.array(image[..., :3], np.uint8, copy=True)
    out[segmentation.find_boundaries(truth, mode="inner")] = TRUTH_RGB
    out[segmentation.find_boundaries(prediction, mode="inner")] = PREDICTION_RGB
    return out


def organ_extremes(per_image: Mapping[str, Mapping[str, float]], organs: Mapping[str, str],
                   metric: str = "aji") -> Tuple[str, str, Dict[str, float]]:
    """(best organ, worst organ, {organ: mean metric}) over the images in `per_image`."""
    scores: Dict[str, list] = {}
    for name, values in per_image.items():
        scores.setdefault(organs.get(name, "unknown"), []).append(values[metric])
    means = {organ: float(np.mean(values)) for organ, values in sorted(scores.items())}
    if not means:
        raise ValueError("no per-image metrics to rank")
    return max(means, key=means.get), min(means, key=means.get), means
