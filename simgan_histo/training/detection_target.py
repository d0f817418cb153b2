"""Task-net targets beyond the release's: nucleus cores, inner distance, separated nuclei.

The release's detection target is a 3×3 square at each nucleus' bounding-box centre. On
large or pale nuclei (Kumar colon, breast) the trained detection head then barely rises
above zero, so such nuclei get no seed or several weak ones (BENCHMARKS.md, "where instance
separation fails"). A core is the part of a nucleus more than `core_fraction` of its own
largest inner distance away from its outline (any pixel next to another id or to the
background): a disc's inner half-radius, a quarter of its area. So every nucleus, small or
large, has a blob of its own, and touching nuclei keep separate blobs. It travels as bit 8
of the in-memory bit mask (never stored: patch files keep the release's bits 1, 2, 4), added
where the instance labels are at hand. Measured on Kumar it scored lower than the centroid
target, so no preset uses it.

The inner-distance target (DIST, Naylor et al. 2018) is the same distance divided by the
nucleus' largest, so it runs from near 0 at the outline to 1 at the centre, with a valley
where two nuclei touch. It travels quantised to DISTANCE_LEVELS steps in bits 16–128 and is
fitted as a soft sigmoid target; flooding −detection (`Thresholds.flood_on`) then cuts
touching nuclei along that valley.

`TaskConfig.separate_touching` changes the segmentation target instead: the nucleus bit is
cleared on a 1-px line where two nuclei touch, so the segmentation map learns a valley there
and the watershed (compactness 0) can cut along it rather than at equal distance from the
seeds. `task_mask` applies whatever the task config asks for.
"""

import cv2
import numpy as np

from simgan_histo.patch_file import MASK_NUCLEUS

MASK_CORE = 8
DISTANCE_SHIFT = 4  # bits 16, 32, 64, 128 hold the quantised inner distance
DISTANCE_LEVELS = 15
TARGETS = ("centroid", "core", "distance")
_RING = np.ones((3, 3), np.uint8)


def _inner_distance(labels: np.ndarray):
    """(distance (H, W) float, peak per id): Euclidean px to the nearest pixel of another id.

    Background counts as another id, so touching nuclei each get their own falling edge.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected an (H, W) instance map, got {labels.shape}")
    ids = labels.astype(np.int32)
    # Interior: pixels whose 3×3 neighbourhood holds only their own id. Every instance
    # pixel lies at >= 1 px from the outline; the interior's distance adds to that.
    same = (cv2.erode(ids.astype(np.float32), _RING, borderType=cv2.BORDER_REPLICATE)
            == cv2.dilate(ids.astype(np.float32), _RING, borderType=cv2.BORDER_REPLICATE))
    interior = (same & (ids > 0)).astype(np.uint8)
    distance = np.where(ids > 0, 1.0 + cv2.distanceTransform(interior, cv2.DIST_L2, 5), 0.0)
    peak = np.zeros(int(ids.max()) + 1, np.float64)
    np.maximum.at(peak, ids.ravel(), distance.ravel())
    return ids, distance, peak


def core_map(labels: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """(H, W) bool: each instance's pixels beyond `fraction` of its own largest inner distance.

    Distances are Euclidean, in px, to the nearest pixel of another id (background
    included), so cores of touching nuclei are separated by at least one px each side.
    """
    ids, distance, peak = _inner_distance(labels)
    return (ids > 0) & (distance > fraction * peak[ids])


def distance_levels(labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 in 0..DISTANCE_LEVELS: inner distance ÷ the nucleus' largest, quantised.

    0 on background; the centre of every nucleus is DISTANCE_LEVELS.
    """
    ids, distance, peak = _inner_distance(labels)
    ratio = np.where(ids > 0, distance / np.maximum(peak[ids], 1.0), 0.0)
    return np.rint(ratio * DISTANCE_LEVELS).astype(np.uint8)


def touching_line(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of a nucleus with a higher id among their 8 neighbours.

    One side of every border between two touching nuclei: a line 1 px wide.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected an (H, W) instance map, got {labels.shape}")
    ids = labels.astype(np.float32)  # exact for ids below 2**24
    return (labels > 0) & (cv2.dilate(ids, _RING, borderType=cv2.BORDER_REPLICATE) > ids)


def needs_labels(task) -> bool:
    """Whether `task_mask` reads the instance labels for this `TaskConfig`."""
    return task.detection_target != "centroid" or task.separate_touching


def task_mask(masks: np.ndarray, labels: np.ndarray, task) -> np.ndarray:
    """`masks` ((H, W) or (B, H, W) uint8) with the bits `task` (a TaskConfig) trains on."""
    if not needs_labels(task):
        return masks
    masks = with_target(masks, labels, task.detection_target, task.core_fraction)
    if task.separate_touching:
        masks, labels = np.asarray(masks), np.asarray(labels)
        line = (touching_line(labels) if labels.ndim == 2
                else np.stack([touching_line(l) for l in labels]))
        masks = np.where(line, masks & ~np.uint8(MASK_NUCLEUS), masks).astype(masks.dtype)
    return masks


def with_target(masks: np.ndarray, labels: np.ndarray, target: str,
                fraction: float = 0.5) -> np.ndarray:
    """`masks` with the bits `target` needs, from `labels`: bit 8 for "core", bits 16–128
    for "distance"; unchanged for "centroid".

    Args:
      masks: uint8 bit masks, (H, W) or (B, H, W).
      labels: instance ids of the same shape.
      target: one of TARGETS.
      fraction: the core's share of the inner distance ("core" only).
    """
    if target not in TARGETS:
        raise ValueError(f"detection target {target!r}: expected one of {TARGETS}")
    if target == "centroid":
        return masks
    masks, labels = np.asarray(masks), np.asarray(labels)
    if masks.shape != labels.shape:
        raise ValueError(f"with_target: mask {masks.shape} and labels {labels.shape} differ")
    if masks.ndim == 3:
        return np.stack([with_target(m, l, target, fraction) for m, l in zip(masks, labels)])
    if target == "core":
        return masks | (core_map(labels, fraction) * MASK_CORE).astype(masks.dtype)
    return masks | (distance_levels(labels) << DISTANCE_SHIFT).astype(masks.dtype)
