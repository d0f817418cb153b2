"""Per-nucleus morphometry: shape, position, stain intensity and model confidence.

One row per instance of a label image, as a dict of equal-length numpy columns (ready for
`csv.writer`, pandas or GeoJSON properties):

| column            | meaning                                                           |
|-------------------|-------------------------------------------------------------------|
| label             | instance id in the label image                                    |
| area_px           | pixel count                                                       |
| perimeter_px      | length of the traced outline (through boundary pixel centres)     |
| eccentricity      | of the ellipse with the same second moments (0 = circle)          |
| solidity          | outline area / area of its convex hull (OpenCV's definition)      |
| centroid_x/_y     | centre of mass, px (x = column, y = row)                          |
| mean_hematoxylin  | mean H optical density (Ruifrok-Johnston, `stain.hed`)            |
| mean_eosin        | mean E optical density                                            |
| mean_segmentation | mean segmentation probability (NaN when no map is given)          |
| area_um2, perimeter_um | the same in µm (only when `mpp` is given)                    |

Areas, centroids, second moments and intensity means are labelled reductions over the whole
image (numpy bincount / scipy.ndimage). Perimeter and solidity need each nucleus's outline:
they come from the polygons of `polygons.instance_polygons` (traced once, reused by the
caller) with OpenCV's C++ geometry, about 10× faster than skimage's per-region properties.
An instance in several pieces is measured on its largest piece for those two columns.
"""

from typing import Dict, Optional

import cv2
import numpy as np
from scipy import ndimage
from simgan_histo import stain
from simgan_histo.postprocess import polygons as polygons_lib

Measurements = Dict[str, np.ndarray]

COLUMNS = ("label", "area_px", "perimeter_px", "eccentricity", "solidity", "centroid_x",
           "centroid_y", "mean_hematoxylin", "mean_eosin", "mean_segmentation")


def _moments(labels: np.ndarray, ids: np.ndarray):
    """Area, centroid and central second moments of each id, by weighted bincounts."""
    rows, cols = np.nonzero(labels)
    owner = labels[rows, cols]
    size = int(ids.max()) + 1 if len(ids) else 1

    def total(weights=None):
        return np.bincount(owner, weights=weights, minlength=size)

    area = total()
    with np.errstate(invalid="ignore", divide="ignore"):
        cy, cx = total(rows) / area, total(cols) / area
    # Central moments from centred coordinates (not E[x²] − E[x]², which cancels badly),
    # with pixels as points like skimage's, so eccentricities agree.
    d_row, d_col = rows - cy[owner], cols - cx[owner]
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_rr, mu_cc, mu_rc = (total(w) / area for w in (d_row ** 2, d_col ** 2, d_row * d_col))
    return tuple(v[ids] for v in (area, cx, cy, mu_rr, mu_cc, mu_rc))


def _eccentricity(mu_rr, mu_cc, mu_rc) -> np.ndarray:
    """Eccentricity of the moment ellipse: sqrt(1 − λ_min / λ_max)."""
    half_trace = (mu_rr + mu_cc) / 2
    spread = np.sqrt(((mu_rr - mu_cc) / 2) ** 2 + mu_rc ** 2)
    major, minor = half_trace + spread, half_trace - spread
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(major > 0, np.sqrt(np.clip(1 - minor / major, 0, 1)), 0.0)


def _outline_measures(polygons: polygons_lib.Polygons, ids: np.ndarray):
    """Perimeter and solidity of each id's outline polygon (NaN where it has none)."""
    perimeter = np.full(len(ids), np.nan)
    solidity = np.full(len(ids), np.nan)
    for row, instance_id in enumerate(ids):
        points = polygons.get(int(instance_id))
        if points is None:
            continue
        contour = np.asarray(points, np.float32).reshape(-1, 1, 2)
        perimeter[row] = cv2.arcLength(contour, True)
        hull_area = cv2.contourArea(cv2.convexHull(contour))
        # A one- or two-pixel-wide outline encloses no area: call it solid.
        solidity[row] = cv2.contourArea(contour) / hull_area if hull_area > 0 else 1.0
    return perimeter, solidity


def measure_nuclei(labels: np.ndarray, rgb: Optional[np.ndarray] = None,
                   segmentation: Optional[np.ndarray] = None, mpp: Optional[float] = None,
                   polygons: Optional[polygons_lib.Polygons] = None) -> Measurements:
    """Measures every instance of `labels` (module docstring for the columns).

    Args:
      labels: (H, W) integer instance ids, 0 = background.
      rgb: (H, W, 3) uint8 image for the H and E means (NaN columns when None).
      segmentation: (H, W) segmentation probability for `mean_segmentation`.
      mpp: µm per pixel of `labels`; adds `area_um2` and `perimeter_um`.
      polygons: `polygons.instance_polygons(labels)` if the caller already has them (in
        the pixel coordinates of `labels`); traced here otherwise.

    Returns:
      {column: (N,) array}, rows sorted by label id.

    Raises:
      ValueError: if an input's shape does not match `labels`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"measure_nuclei: expected (H, W) integer labels, got "
                         f"{labels.dtype} {labels.shape}")
    for name, array, shape in (("rgb", rgb, labels.shape + (3,)),
                               ("segmentation", segmentation, labels.shape)):
        if array is not None and np.shape(array) != shape:
            raise ValueError(f"measure_nuclei: {name} has shape {np.shape(array)}, "
                             f"expected {shape}")
    ids = np.unique(labels)
    ids = ids[ids > 0]
    area, cx, cy, mu_rr, mu_cc, mu_rc = _moments(labels, ids)
    if polygons is None:
        polygons = polygons_lib.instance_polygons(labels)
    perimeter, solidity = _outline_measures(polygons, ids)
    columns: Measurements = {
        "label": ids.astype(np.int64),
        "area_px": area.astype(np.int64),
        "perimeter_px": perimeter,
        "eccentricity": _eccentricity(mu_rr, mu_cc, mu_rc),
        "solidity": solidity,
        "centroid_x": cx,
        "centroid_y": cy,
    }
    nan = np.full(len(ids), np.nan)
    if rgb is not None and len(ids):
        densities = stain.hed(np.asarray(rgb, np.uint8))
        columns["mean_hematoxylin"] = np.asarray(ndimage.mean(densities[..., 0], labels, ids))
        columns["mean_eosin"] = np.asarray(ndimage.mean(densities[..., 1], labels, ids))
    else:
        columns["mean_hematoxylin"] = columns["mean_eosin"] = nan
    if segmentation is not None and len(ids):
        columns["mean_segmentation"] = np.asarray(
            ndimage.mean(np.asarray(segmentation, np.float64), labels, ids))
    else:
        columns["mean_segmentation"] = nan
    if mpp is not None:
        columns["area_um2"] = columns["area_px"] * mpp ** 2
        columns["perimeter_um"] = columns["perimeter_px"] * mpp
    return columns
