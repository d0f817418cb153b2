"""Raster helpers: OpenCV Gaussian smoothing, connected components and their bounding-box
centres (the watershed and its seeds), and per-id means of an instance map (its centroids,
mean stain; used across the package)."""

from typing import Optional, Tuple

import cv2
import numpy as np


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """`scipy.ndimage.gaussian_filter(image, sigma)` in float32 with OpenCV, ≈ 6× faster.

    The same kernel (radius int(4σ + 0.5), normalised samples of the Gaussian) and border
    (mirror with the edge pixel repeated: scipy "reflect" = OpenCV BORDER_REFLECT); OpenCV
    accumulates in float32 where scipy uses float64, so values differ by ≤ 2 ulp.
    """
    image = np.asarray(image, np.float32)
    if sigma <= 0:
        return image
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * offsets ** 2 / sigma ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    return cv2.sepFilter2D(image, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def components(binary: np.ndarray, connectivity: int):
    """(int32 labels, count) of the connected components of a boolean image.

    OpenCV's labelling, ≈ 2× faster than `ndimage.label` (its `WithStats` variant is not:
    boxes come from `find_objects`); its numbering may differ from scipy's, so it is used
    only where ids do not reach the output.
    """
    count, labels = cv2.connectedComponents(binary.view(np.uint8), connectivity=connectivity,
                                            ltype=cv2.CV_32S)
    return labels, count - 1


def bbox_centres(components: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) integer (row, col) bounding-box centres of components 1..count."""
    if count == 0:
        return np.zeros((0, 2), np.int64)
    rows, cols = np.nonzero(components)
    ids = components[rows, cols]
    centres = []
    for coordinate in (rows, cols):
        low = np.full(count + 1, np.iinfo(np.int64).max)
        high = np.full(count + 1, -1)
        np.minimum.at(low, ids, coordinate)
        np.maximum.at(high, ids, coordinate)
        centres.append((low[1:] + high[1:]) // 2)
    return np.stack(centres, axis=1)


def id_means(ids: np.ndarray, values: np.ndarray, size: Optional[int] = None) -> np.ndarray:
    """(size,) float64 mean of `values` over the pixels of each id 0..size−1 of `ids`
    (non-negative ints, same number of elements); 0 for an id with no pixel. `size`
    defaults to max(ids) + 1."""
    return _means(ids, [values], size)[0]


def centroids(labels: np.ndarray, size: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the mean pixel row and column of each id 0..size−1 of an (H, W)
    instance map (0 for an absent id), as `id_means`."""
    rows, cols = np.indices(labels.shape)
    mean_rows, mean_cols = _means(labels, [rows, cols], size)
    return mean_rows, mean_cols


def _means(ids, columns, size: Optional[int]):
    """`id_means` of each array in `columns`, counting the ids once."""
    ids = np.ravel(ids)
    if size is None:
        size = int(ids.max()) + 1 if ids.size else 1
    counts = np.maximum(np.bincount(ids, minlength=size), 1)
    return [np.bincount(ids, weights=np.ravel(column).astype(np.float64), minlength=size) / counts
            for column in columns]
