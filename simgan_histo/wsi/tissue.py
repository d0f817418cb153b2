"""Tissue mask: Otsu + morphology on a thumbnail, or a user's mask file, and/or a level-0 ROI.

The automatic mask follows HoVer-Net/TIAToolbox (Otsu on a low-resolution thumbnail, then
remove small objects, fill small holes, dilate), with two guards those lack: Otsu runs on
optical density (glass ≈ 0, any stain > 0) and its threshold is clamped to
[`OD_MIN`, `OD_MAX`], so a blank slide or blank region gives no tissue instead of a
threshold inside the noise, and a slide covered in tissue does not lose its pale stroma.
The mask is dilated by `tissue_margin_um` so nuclei at the tissue edge are not cut off.
"""

import dataclasses
import pathlib
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from absl import logging
from scipy import ndimage
from skimage import filters, morphology

OD_MIN = 0.04  # optical density of clean glass is ≈ 0.00–0.03 (JPEG noise included)
OD_MAX = 0.15  # pale stroma and fat are ≈ 0.15–0.3: Otsu must not cut above them
MAX_HOLE_FACTOR = 4.0  # holes up to 4 × the smallest kept object are filled (lumina stay out)
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


@dataclasses.dataclass
class TissueMask:
    """A boolean mask over the slide; `downsample` = level-0 px per mask px (x, y)."""

    mask: np.ndarray
    downsample: Tuple[float, float]
    source: str  # "otsu", "file:<path>", "roi", "otsu+roi", …

    def __post_init__(self):
        self.mask = np.asarray(self.mask, bool)
        padded = np.pad(self.mask.astype(np.int64), ((1, 0), (1, 0)))
        self._integral = padded.cumsum(0).cumsum(1)

    def _to_mask_px(self, x: float, y: float) -> Tuple[int, int]:
        return int(np.floor(x / self.downsample[0])), int(np.floor(y / self.downsample[1]))

    def fraction(self, box_level0: Sequence[float]) -> float:
        """Fraction of mask pixels in the level-0 box (x, y, width, height) that are tissue."""
        x, y, width, height = box_level0
        height_px, width_px = self.mask.shape
        x0, y0 = self._to_mask_px(x, y)
        x1, y1 = self._to_mask_px(x + width - 1e-6, y + height - 1e-6)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1 + 1, width_px), min(y1 + 1, height_px)
        if x1 <= x0 or y1 <= y0:
            return 0.0
        total = (self._integral[y1, x1] - self._integral[y0, x1] - self._integral[y1, x0]
                 + self._integral[y0, x0])
        return float(total) / ((x1 - x0) * (y1 - y0))

    def contains(self, x_level0: np.ndarray, y_level0: np.ndarray) -> np.ndarray:
        """Whether each level-0 point (e.g. a nucleus centroid) lies in tissue."""
        cols = np.floor(np.asarray(x_level0, np.float64) / self.downsample[0]).astype(np.int64)
        rows = np.floor(np.asarray(y_level0, np.float64) / self.downsample[1]).astype(np.int64)
        inside = ((cols >= 0) & (rows >= 0) & (cols < self.mask.shape[1])
                  & (rows < self.mask.shape[0]))
        result = np.zeros(cols.shape, bool)
        result[inside] = self.mask[rows[inside], cols[inside]]
        return result

    def area_um2(self, slide_mpp: float) -> float:
        """Tissue area in µm² (mask pixels × their level-0 footprint)."""
        pixel_um2 = self.downsample[0] * self.downsample[1] * slide_mpp ** 2
        return float(self.mask.sum()) * pixel_um2


def thumbnail(slide, downsample: float, strip_px: int = 2048) -> np.ndarray:
    """The whole slide at 1/downsample, read in horizontal strips so memory stays bounded."""
    width, height = slide.dimensions
    out_w = max(1, int(round(width / downsample)))
    out_h = max(1, int(round(height / downsample)))
    rows = max(1, int(strip_px // max(1.0, downsample / slide.level_downsamples[
        slide.best_level(downsample)])))
    strips = []
    for row in range(0, out_h, rows):
        count = min(rows, out_h - row)
        strip = slide.read(0, row * downsample, out_w * downsample, count * downsample,
                           downsample)
        strips.append(strip[:count])
    return np.concatenate(strips, axis=0)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Mean optical density over RGB: 0 for white glass, larger for more stain."""
    return -np.log10(np.maximum(rgb.astype(np.float32), 1.0) / 255.0).mean(axis=2)


def otsu_tissue(rgb: np.ndarray, mask_mpp: float, min_area_um2: float,
                margin_um: float) -> np.ndarray:
    """Tissue pixels of a thumbnail at `mask_mpp` µm/px (see the module docstring)."""
    density = optical_density(rgb)
    if density.max() - density.min() < 1e-3:
        threshold = OD_MIN
    else:
        threshold = float(np.clip(filters.threshold_otsu(density), OD_MIN, OD_MAX))
    mask = density > threshold
    pixel_um2 = mask_mpp ** 2
    mask = ndimage.binary_closing(mask, morphology.disk(1), border_value=0)
    min_px = max(1, int(round(min_area_um2 / pixel_um2)))
    mask = morphology.remove_small_objects(mask, max_size=min_px)
    mask = fill_small_holes(mask, int(MAX_HOLE_FACTOR * min_px))
    radius = int(round(margin_um / mask_mpp))
    if radius > 0 and mask.any():
        mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))).astype(bool)
    return mask


def fill_small_holes(mask: np.ndarray, max_px: int) -> np.ndarray:
    """Fills background regions enclosed by tissue (not touching the border) up to max_px."""
    holes, count = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    if count == 0:
        return mask
    small = np.bincount(holes.ravel()) <= max_px
    small[0] = False
    return mask | small[holes]


def find_mask_file(mask_dir, slide_path) -> pathlib.Path:
    """`<mask_dir>/<slide stem>.<png|tif|…>` (or `<stem>_mask.*`); FileNotFoundError otherwise."""
    mask_dir, stem = pathlib.Path(mask_dir), pathlib.Path(slide_path).stem
    for name in (stem, f"{stem}_mask", pathlib.Path(slide_path).name):
        for suffix in MASK_SUFFIXES:
            candidate = mask_dir / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{mask_dir}: no mask for {pathlib.Path(slide_path).name} "
                            f"(expected {stem}.png or {stem}_mask.png, or .tif/.jpg)")


def load_mask_file(path, slide_dimensions: Tuple[int, int]) -> TissueMask:
    """A user's mask at any resolution with the slide's aspect ratio; non-zero = tissue."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"{path}: not a readable mask image")
    mask = pixels.max(axis=2) > 0 if pixels.ndim == 3 else pixels > 0
    width, height = slide_dimensions
    scale_x, scale_y = width / mask.shape[1], height / mask.shape[0]
    if abs(scale_x - scale_y) > 0.02 * max(scale_x, scale_y) + 1.0:
        raise ValueError(f"{path}: mask {mask.shape[1]}x{mask.shape[0]} does not have the "
                         f"slide's aspect ratio ({width}x{height})")
    return TissueMask(mask, (scale_x, scale_y), f"file:{path}")


def restrict_to_roi(tissue: TissueMask, roi: Sequence[float]) -> TissueMask:
    """The mask with everything outside the level-0 ROI (x, y, width, height) cleared."""
    x, y, width, height = roi
    if width <= 0 or height <= 0:
        raise ValueError(f"roi={tuple(roi)}: expected positive width and height")
    keep = np.zeros_like(tissue.mask)
    x0, y0 = int(np.floor(x / tissue.downsample[0])), int(np.floor(y / tissue.downsample[1]))
    x1 = int(np.ceil((x + width) / tissue.downsample[0]))
    y1 = int(np.ceil((y + height) / tissue.downsample[1]))
    keep[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return TissueMask(tissue.mask & keep, tissue.downsample, f"{tissue.source}+roi")


def slide_tissue(slide, slide_mpp: float, config, mask_dir=None,
                 roi: Optional[Sequence[float]] = None,
                 thumb: Optional[np.ndarray] = None) -> TissueMask:
    """The slide's tissue: a mask file from `mask_dir` if given, else Otsu; then the ROI.

    Args:
      slide: an open `reader.Slide`.
      slide_mpp: its level-0 µm/px.
      config: `WsiConfig` (thumbnail_mpp, min_tissue_area_um2, tissue_margin_um).
      mask_dir: folder of user masks matched by file name (None: automatic).
      roi: level-0 (x, y, width, height) to restrict to (None: whole slide).
      thumb: the thumbnail at `config.thumbnail_mpp`, if already read.
    """
    downsample = config.thumbnail_mpp / slide_mpp
    if mask_dir is not None:
        tissue = load_mask_file(find_mask_file(mask_dir, slide.path), slide.dimensions)
    else:
        thumb = thumbnail(slide, downsample) if thumb is None else thumb
        mask = otsu_tissue(thumb, config.thumbnail_mpp, config.min_tissue_area_um2,
                           config.tissue_margin_um)
        width, height = slide.dimensions
        tissue = TissueMask(mask, (width / mask.shape[1], height / mask.shape[0]), "otsu")
    if roi is not None:
        tissue = restrict_to_roi(tissue, roi)
    if not tissue.mask.any():
        logging.warning("%s: no tissue found (%s mask)", slide.path, tissue.source)
    return tissue


def labels_outline(mask: np.ndarray) -> np.ndarray:
    """One-pixel outline of a boolean mask (for QC drawings)."""
    return mask & ~ndimage.binary_erosion(mask)
