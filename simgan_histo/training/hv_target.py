"""HoVer-Net's horizontal and vertical distance maps (Graham et al. 2019): a third head.

Each nuclear pixel's signed horizontal and vertical offset from its nucleus' centroid,
divided by the largest such offset inside that nucleus, so both maps run from −1 to 1
across every nucleus and are 0 on background. Inside a nucleus they rise by 2 ÷ its width
per pixel; where two nuclei touch the horizontal map falls from about +1 to −1 in one
pixel (the vertical map likewise across a horizontal border). The net's maps keep that
fall as a steep negative slope, so `boundary_energy` marks where touching nuclei meet, and
the watershed (`Thresholds.flood_on="hv"`) floods the segmentation map scaled down there:
the cut follows the fall instead of the midline between seeds, where a mis-placed cut costs
Dice2 (BENCHMARKS.md, "where Dice2 goes").

The same 3×3 Sobel slope (÷ 8, so a unit ramp has slope 1) serves the training loss's
gradient term (`task_loss`) and the energy; `sobel_kernels` holds it for TensorFlow.
"""

import cv2
import numpy as np

from simgan_histo.postprocess import raster

CHANNELS = 2  # 0: horizontal (column offset), 1: vertical (row offset)


def hv_maps(labels: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 in [−1, 1]: each pixel's offset from its nucleus' centroid.

    Args:
      labels: (H, W) integer instance ids, 0 = background.

    Returns:
      channel 0: (column − centroid column) ÷ the largest |column offset| in the nucleus;
      channel 1: the same for rows. 0 on background and for one-pixel-wide extents.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"hv_maps: expected an (H, W) instance map, got {labels.shape}")
    ids = labels.astype(np.int64).ravel()
    out = np.zeros(labels.shape + (CHANNELS,), np.float32)
    inside = ids > 0
    if not inside.any():
        return out
    size = int(ids.max()) + 1
    rows, cols = np.indices(labels.shape)
    for channel, coordinate in enumerate((cols.ravel(), rows.ravel())):
        centre = raster.id_means(ids, coordinate, size)
        offset = np.where(inside, coordinate - centre[ids], 0.0)
        extent = np.zeros(size)
        np.maximum.at(extent, ids, np.abs(offset))
        scaled = offset / np.where(extent[ids] > 0, extent[ids], 1.0)
        out[..., channel] = scaled.reshape(labels.shape)
    return out


def sobel_kernels() -> np.ndarray:
    """(3, 3, 1, 2) float32: the Sobel d/dcolumn and d/drow kernels ÷ 8 (slope per px)."""
    d_col = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8.0
    return np.stack([d_col, d_col.T], axis=-1)[:, :, None, :]


def boundary_energy(hv: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how steeply either map falls, clipped at a slope of −1.

    A jump from +1 to −1 between neighbours gives 1; the rise inside a nucleus gives 0.
    """
    hv = np.asarray(hv, np.float32)
    if hv.ndim != 3 or hv.shape[-1] != CHANNELS:
        raise ValueError(f"boundary_energy: expected (H, W, 2) maps, got {hv.shape}")
    fall_col = -cv2.Sobel(np.ascontiguousarray(hv[..., 0]), cv2.CV_32F, 1, 0, ksize=3,
                          borderType=cv2.BORDER_REFLECT) / 8.0
    fall_row = -cv2.Sobel(np.ascontiguousarray(hv[..., 1]), cv2.CV_32F, 0, 1, ksize=3,
                          borderType=cv2.BORDER_REFLECT) / 8.0
    return np.clip(np.maximum(fall_col, fall_row), 0.0, 1.0)
