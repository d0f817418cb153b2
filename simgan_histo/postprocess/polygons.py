"""Nucleus outlines: one polygon per instance by contour tracing, and back to a label image.

Coordinates are (x, y) in pixels of the label image, at pixel centres: pixel (row r, col c)
is the point (c, r). `cv2.findContours` (RETR_EXTERNAL, CHAIN_APPROX_SIMPLE, as in the release)
traces the outer boundary pixels, so `rasterize` (cv2.fillPoly, boundary included) gives back
the instance's pixels, holes aside. Writers that use the pixel-corner convention (QuPath
GeoJSON) add 0.5.

Tracing runs on each instance's bounding-box crop (from `ndimage.find_objects`), so the cost
is proportional to the nuclei's area, not to the number of nuclei times the image size.
"""

from typing import Dict, Tuple

import cv2
import numpy as np
from scipy import ndimage

Polygons = Dict[int, np.ndarray]  # instance id -> (K, 2) float64 (x, y)


def instance_polygons(labels: np.ndarray, offset_xy: Tuple[float, float] = (0.0, 0.0),
                      scale: float = 1.0) -> Polygons:
    """Traces the outer contour of every instance.

    An instance split into several pieces (e.g. by nearest-neighbour resizing) is represented
    by its largest piece.

    Args:
      labels: (H, W) integer instance ids, 0 = background.
      offset_xy: added to every coordinate after scaling (e.g. a tile's position).
      scale: coordinates are multiplied by this (e.g. processing px -> level-0 px).

    Returns:
      {instance id: (K, 2) float64 array of (x, y) vertices}, ids in increasing order.

    Raises:
      ValueError: if `labels` is not a 2-D integer array.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"instance_polygons: expected (H, W) integer labels, got "
                         f"{labels.dtype} {labels.shape}")
    offset = np.asarray(offset_xy, np.float64)
    height, width = labels.shape
    polygons: Polygons = {}
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        instance_id = index + 1
        # The box grown by 1 px holds no pixel of the instance on its rim, which keeps the
        # contour closed; only where that rim leaves the image is it padded with zeros
        # (np.pad on every crop cost more than the tracing).
        top, left = box[0].start - 1, box[1].start - 1
        bottom, right = box[0].stop + 1, box[1].stop + 1
        crop = (labels[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
                == instance_id).view(np.uint8)
        if top < 0 or left < 0 or bottom > height or right > width:
            crop = cv2.copyMakeBorder(crop, int(top < 0), int(bottom > height), int(left < 0),
                                      int(right > width), cv2.BORDER_CONSTANT, value=0)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
        points = contour[:, 0, :].astype(np.float64)
        points += (left, top)
        polygons[instance_id] = points * scale + offset
    return polygons


def rasterize(polygons: Polygons, shape: Tuple[int, int]) -> np.ndarray:
    """Fills each polygon (boundary included) with its id; later ids win where they overlap.

    Args:
      polygons: {id: (K, 2) (x, y)} as returned by `instance_polygons`.
      shape: (H, W) of the output.

    Returns:
      (H, W) uint32 label image.
    """
    # cv2 draws into int32 images, not uint32.
    canvas = np.zeros(shape, np.int32)
    for instance_id, points in polygons.items():
        vertices = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(canvas, [vertices], int(instance_id))
    return canvas.astype(np.uint32)
