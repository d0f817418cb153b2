"""Watershed seeds: where the marker watershed (`watershed.py`) starts each nucleus.

- Detection seeds (the release's): bounding-box centres of the smoothed detection map's
  components above a threshold.
- Distance seeds (`seed_h` > 0): the same centres of the h-maxima of the foreground's
  smoothed distance transform, the classical rule; one seed per convex blob, whatever the
  detection map says.
- Seed recall: a foreground component with no seed gets one at its segmentation maximum.
- Markers: the seeds dilated 3×3 and labelled (the release's rule).
"""

import cv2
import numpy as np
from scipy import ndimage
from skimage import morphology as sk_morphology

from simgan_histo.postprocess import raster

_EIGHT = np.ones((3, 3), bool)


def detection_seeds(detection: np.ndarray, threshold: float) -> np.ndarray:
    """(K, 2) seeds: bounding-box centres of the detection components above `threshold`."""
    components, count = raster.components(detection > threshold, 8)
    return raster.bbox_centres(components, count)


def distance_map(foreground: np.ndarray) -> np.ndarray:
    """Euclidean distance of each foreground pixel to the background, Gaussian σ 1 (float32).
    Capped at the image's longer side: with no background pixel OpenCV returns FLT_MAX."""
    distance = cv2.distanceTransform(foreground.view(np.uint8), cv2.DIST_L2, 5)
    return raster.gaussian(np.minimum(distance, np.float32(max(foreground.shape))), 1.0)


def h_maxima(image: np.ndarray, height: float) -> np.ndarray:
    """Boolean regional maxima of the h-maximum transform: reconstruct image − h under the
    image by dilation, then keep its plateaus that cannot be reached from higher ground.
    Two peaks whose saddle lies less than h below them give one region. (skimage's
    `h_maxima` keeps both of two *equal* peaks whatever h, e.g. two touching equal discs.)"""
    image = np.asarray(image, np.float64)
    raised = sk_morphology.reconstruction(image - height, image, method="dilation")
    step = 0.01 * height
    lowered = sk_morphology.reconstruction(raised - step, raised, method="dilation")
    return raised - lowered > 0.5 * step


def distance_seeds(distance: np.ndarray, foreground: np.ndarray, height: float) -> np.ndarray:
    """(K, 2) seeds: bounding-box centres of the distance map's h-maxima, per 8-connected
    foreground component.

    A component whose distance map has a single local-maximum plateau (most nuclei) has one
    h-maximum region, its pixels within `height` of its peak, found without the
    reconstruction; only the others are reconstructed, on their own crop (2.5–3× faster than
    `h_maxima` over a 1000² Kumar image, whose sort is mostly background). Components are
    independent, as in `watershed.flood`.
    """
    components, count = raster.components(foreground, 8)
    if count == 0:
        return np.zeros((0, 2), np.int64)
    # Per-label maxima by ufunc.at over the foreground: ndimage.maximum sorts every pixel.
    peaks = np.zeros(count + 1, np.float32)
    np.maximum.at(peaks, components[foreground], distance[foreground])
    local = foreground & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    plateaus, plateau_count = raster.components(local, 8)
    owners = np.zeros(plateau_count + 1, np.int64)
    owners[plateaus[local]] = components[local]  # a plateau lies inside one component
    several = np.bincount(owners[1:], minlength=count + 1) >= 2
    several[0] = False
    near_peak = ~several[components] & (distance >= peaks[components] - height)
    single = raster.bbox_centres(np.where(near_peak, components, 0), count)
    seeds = [single[~several[1:]]]
    boxes = ndimage.find_objects(components)
    for component in np.flatnonzero(several).tolist():
        box = boxes[component - 1]
        inside = components[box] == component
        found, found_count = raster.components(
            h_maxima(np.where(inside, distance[box], 0.0), height) & inside, 8)
        seeds.append(raster.bbox_centres(found, found_count)
                     + np.array([box[0].start, box[1].start]))
    return np.concatenate(seeds).astype(np.int64)


def recalled_seeds(seg: np.ndarray, foreground: np.ndarray, seeds: np.ndarray,
                    max_area_px: int) -> np.ndarray:
    """Seeds at the segmentation maximum of each unseeded foreground component."""
    components, count = raster.components(foreground, 8)
    if count == 0:
        return np.zeros((0, 2), np.int64)
    seeded = np.zeros(count + 1, bool)
    seeded[components[seeds[:, 0], seeds[:, 1]]] = True
    areas = np.bincount(components.ravel(), minlength=count + 1)
    wanted = ~seeded & (areas < max_area_px)
    wanted[0] = False
    pixels = np.flatnonzero(wanted[components])
    if len(pixels) == 0:
        return np.zeros((0, 2), np.int64)
    owner = components.ravel()[pixels]
    # Per component, the pixel of highest probability (first in raster order on ties).
    order = np.lexsort((-seg.ravel()[pixels], owner))
    first = np.ones(len(order), bool)
    first[1:] = owner[order][1:] != owner[order][:-1]
    return np.stack(np.unravel_index(pixels[order[first]], seg.shape), axis=1)


def markers(shape, seeds: np.ndarray) -> np.ndarray:
    """Release: markers = label(dilate(seeds, 3×3)); seeds closer than 3 px merge."""
    points = np.zeros(shape, np.uint8)
    points[seeds[:, 0], seeds[:, 1]] = 1
    markers, _ = ndimage.label(cv2.dilate(points, np.ones((3, 3), np.uint8)), structure=_EIGHT)
    return markers
