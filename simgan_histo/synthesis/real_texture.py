"""Nuclear texture cut from the tile's own nuclei (`SynthesisConfig.nuclear_texture_source`).

The release's nuclear texture A is a flat nuclear colour modulated by an eosin crop and
noise: no chromatin grain, no nucleoli, no membrane. Here each synthetic nucleus instead
takes the pixels of one real nucleus of the same tile, resized to its box. The real nuclei
are single components of the tile's super-segmentation (the pixels inpainted away for the
background: no label is read), kept when their area is in range and they are convex
enough to be one nucleus. Each crop is filled outward from its nucleus (nearest nuclear
pixel) so that the whole box is nuclear texture and the synthetic polygon, which does not
follow the real outline, never shows real cytoplasm under its label.
"""

from typing import List

import cv2
import numpy as np
from scipy import ndimage

from simgan_histo.synthesis import textures

MIN_SOLIDITY = 0.85  # pixel counts: a disc of radius 10 scores 0.94, two tangent ones 0.83
MAX_CROPS = 400  # per tile: enough variety, bounded memory (≈ 1 MB)


def nucleus_crops(rgb: np.ndarray, nuclear_mask: np.ndarray, min_area: int,
                  max_area: int) -> List[np.ndarray]:
    """Real nuclei of a tile as (h, w, 3) uint8 crops of their boxes, filled outward.

    Args:
      rgb: (H, W, 3) uint8 tile.
      nuclear_mask: (H, W) uint8 0/1, the tile's super-segmentation.
      min_area, max_area: component area range, px.

    Returns:
      Up to MAX_CROPS crops, in component order (deterministic).
    """
    components, _ = ndimage.label(nuclear_mask)
    crops = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == index
        area = int(mask.sum())
        if not min_area <= area <= max_area or _solidity(mask) < MIN_SOLIDITY:
            continue
        # Nearest nuclear pixel for every pixel of the box: the crop is all nucleus.
        _, (rows, cols) = ndimage.distance_transform_edt(~mask, return_indices=True)
        crops.append(np.ascontiguousarray(rgb[box][rows, cols]))
        if len(crops) == MAX_CROPS:
            break
    return crops


def _solidity(mask: np.ndarray) -> float:
    points = cv2.findNonZero(mask.astype(np.uint8))
    hull = cv2.convexHull(points)
    hull_mask = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)
    return float(mask.sum()) / max(1, int(hull_mask.sum()))


def paste(rng, nuclear: np.ndarray, labels: np.ndarray, boxes: np.ndarray,
          crops: List[np.ndarray], colour_jitter: float, halo_px: int) -> None:
    """Writes a random real nucleus, resized to each nucleus's box, into the texture A in
    place, over that nucleus's pixels and a halo of `halo_px` around them (where the
    boundary blur reaches) that no other nucleus covers.

    Args:
      nuclear: (3, S, S) float32 planar texture A of the patch; other pixels keep their
        synthetic texture.
      labels: (S, S) instance ids of the patch (ids 1..K).
      boxes: (K, 4) x0, y0, x1, y1 (exclusive) of ids 1..K in patch pixels, clipped.
      crops: `nucleus_crops` of the patch's tile (not empty).
      colour_jitter: the release's `aug_color` magnitude, one draw per patch.
    """
    if not len(boxes):
        return
    size = labels.shape[0]
    picks = rng.integers(0, len(crops), len(boxes))
    flips = rng.random(len(boxes)) < 0.5  # a mirrored nucleus: twice the variety
    pasted = np.zeros((size, size, 3), np.float32)
    covered = np.zeros((size, size), bool)
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * halo_px + 1, 2 * halo_px + 1))
    for instance, ((x0, y0, x1, y1), pick, flip) in enumerate(
            zip(boxes.tolist(), picks.tolist(), flips.tolist()), start=1):
        if x1 <= x0 or y1 <= y0:
            continue
        crop = crops[pick][:, ::-1] if flip else crops[pick]
        resized = cv2.resize(crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        # The halo repeats the crop's edge: the real texture reaches past the box.
        ex0, ey0 = max(x0 - halo_px, 0), max(y0 - halo_px, 0)
        ex1, ey1 = min(x1 + halo_px, size), min(y1 + halo_px, size)
        grown = cv2.copyMakeBorder(resized, y0 - ey0, ey1 - y1, x0 - ex0, ex1 - x1,
                                   cv2.BORDER_REPLICATE)
        window = labels[ey0:ey1, ex0:ex1]
        own = (window == instance).astype(np.uint8)
        where = (cv2.dilate(own, ring) > 0) & ((window == 0) | (own > 0))
        pasted[ey0:ey1, ex0:ex1][where] = grown[where]
        covered[ey0:ey1, ex0:ex1] |= where
    if not covered.any():
        return
    scale, offset = textures.jitter_params(rng, colour_jitter, pasted[covered].mean(axis=0))
    for channel in range(3):
        plane = nuclear[channel]
        plane[covered] = pasted[..., channel][covered] * scale[channel] + offset[channel]
