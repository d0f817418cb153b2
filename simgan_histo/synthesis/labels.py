"""Label encodings of a synthetic patch: instance-id map and the release's bit mask.

Bits (release label PNG): 1 nucleus, 2 contour (the one-pixel ring *outside* the nuclei, the
release's Sobel edge of the mask), 4 centroid (one pixel at the centre of each nucleus'
bounding box). Real MoNuSeg-style masks use only bits 1 and 4. Overlapping nuclei keep
separate ids in the instance map (the later one is drawn on top); the bits, like the
release's, see only their union.
"""

import cv2
import numpy as np
from scipy import ndimage

from simgan_histo import patch_file

_RING = np.ones((3, 3), np.uint8)
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point vertices: 1/16 px


OUTSIDE_ID = np.iinfo(np.uint16).max  # polygons that miss the kept crop (see `rasterise`)


def rasterise(vertices: np.ndarray, size: int, keep=None) -> np.ndarray:
    """Instance map (size, size) uint16 of the polygons, drawn in order (later on top).

    Args:
      keep: optional (x0, y0, x1, y1) crop that will be kept. Polygons whose bounding box
        meets it get ids 1..K in order; the others (needed only for the texture around the
        crop) all get OUTSIDE_ID, so the kept crop rarely needs renumbering. Without
        `keep`, polygon k gets id k + 1.
    """
    labels = np.zeros((size, size), np.uint16)
    scaled = np.round(vertices * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    if keep is None:
        ids = np.arange(1, len(vertices) + 1)
    else:
        x0, y0, x1, y1 = keep
        low, high = vertices.min(axis=1), vertices.max(axis=1)
        # One pixel of slack: a polygon ending just short of the crop may still set the
        # crop's first pixel when rasterised.
        meets = ((high[:, 0] >= x0 - 1) & (low[:, 0] < x1 + 1) & (high[:, 1] >= y0 - 1)
                 & (low[:, 1] < y1 + 1))
        ids = np.where(meets, np.cumsum(meets), OUTSIDE_ID)
    for polygon, instance in zip(scaled, ids.tolist()):
        cv2.fillPoly(labels, [polygon], instance, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return labels


def fill_union(vertices: np.ndarray, size: int, value: int = 1) -> np.ndarray:
    """uint8 (size, size) mask, `value` inside any of the polygons.

    One fillPoly call per polygon: given several at once, OpenCV fills with the even-odd
    rule and leaves their overlaps empty.
    """
    mask = np.zeros((size, size), np.uint8)
    scaled = np.round(vertices * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    for polygon in scaled:
        cv2.fillPoly(mask, [polygon], value, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumbers the ids present to 1..K in increasing order (0 stays 0); a contiguous copy."""
    present = np.bincount(labels.ravel())
    present[0] = 0
    ids = np.flatnonzero(present)
    if len(ids) == len(present) - 1:  # already 1..K: skip the (slow) lookup
        return np.ascontiguousarray(labels)
    lookup = np.zeros(len(present), labels.dtype)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=labels.dtype)
    return lookup[labels]


def bbox_centres(labels: np.ndarray, boxes=None) -> np.ndarray:
    """(K, 2) row, col of each id's bounding-box centre (ids 1..max; absent ids skipped).

    Args:
      boxes: `scipy.ndimage.find_objects(labels)` if already computed.
    """
    centres = []
    for box in ndimage.find_objects(labels) if boxes is None else boxes:
        if box is not None:
            centres.append(((box[0].start + box[0].stop - 1) // 2,
                            (box[1].start + box[1].stop - 1) // 2))
    return np.asarray(centres, np.int64).reshape(-1, 2)


def labels_to_mask(labels: np.ndarray, boxes=None) -> np.ndarray:
    """The release's bit mask (uint8: 1 nucleus, 2 outer contour, 4 bbox centroid)."""
    nucleus = cv2.compare(labels, 0, cv2.CMP_GT)  # 0/255
    contour = cv2.subtract(cv2.dilate(nucleus, _RING), nucleus)
    mask = (nucleus & patch_file.MASK_NUCLEUS) | (contour & patch_file.MASK_CONTOUR)
    centres = bbox_centres(labels, boxes)
    if len(centres):
        mask[centres[:, 0], centres[:, 1]] |= patch_file.MASK_CENTROID
    return mask


def instances_and_mask(labels: np.ndarray):
    """(instance ids renumbered 1..K as a contiguous copy, bit mask) of a label crop, with
    one scan of the crop for both (the ids present and their boxes)."""
    boxes = ndimage.find_objects(labels)
    if len(boxes) == OUTSIDE_ID:
        raise ValueError("labels of a kept crop contain OUTSIDE_ID")
    if any(box is None for box in boxes):
        labels = relabel_sequential(labels)
        boxes = [box for box in boxes if box is not None]
    else:
        labels = np.ascontiguousarray(labels)
    return labels, labels_to_mask(labels, boxes)


def mask_to_labels(mask: np.ndarray) -> np.ndarray:
    """Instance ids from the nucleus bit: 8-connected components (touching nuclei merge)."""
    nucleus = (np.asarray(mask) & patch_file.MASK_NUCLEUS).astype(np.uint8)
    _, labels = cv2.connectedComponents(nucleus, connectivity=8, ltype=cv2.CV_32S)
    return labels.astype(np.uint16)
