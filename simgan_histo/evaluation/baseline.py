"""The classical baseline: Otsu on hematoxylin + distance-transform watershed.

No learning, no labels: the comparison row every learned model must beat (DESIGN §5).

1. Hematoxylin optical density by colour deconvolution (`stain.hed`), Gaussian-smoothed.
2. Otsu's threshold on it gives the nuclear foreground; a small opening removes speckle,
   holes are filled, specks below `min_area_um2` dropped.
3. The Euclidean distance to the background, smoothed, has one maximum per roundish
   nucleus; maxima at least `min_distance_um` apart and `h_um` above their surroundings
   (h-maxima) are the markers of a watershed on −distance inside the foreground, which cuts
   touching nuclei at their necks.

Lengths are in µm and converted with the image's µm/px, so one setting serves 20× and 40×.
"""

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import filters
from skimage import morphology
from skimage import segmentation as sk_segmentation

from simgan_histo import stain
from simgan_histo.evaluation import metrics
from simgan_histo.postprocess import watershed

DEFAULT_MPP = 0.25  # MoNuSeg and the release work at 40× ≈ 0.25 µm/px


@dataclasses.dataclass(frozen=True)
class ClassicalConfig:
    """Settings of the classical baseline.

    h_um and distance_smooth_um were picked from a 4-point grid scored on MoNuSeg *train*
    labels (AJI 0.39 -> 0.41 on 10 images); the test split was never used to choose them.
    """

    smooth_um: float = 0.5  # Gaussian σ on the H channel
    opening_um: float = 0.5  # radius of the opening that removes speckle
    min_area_um2: float = 5.0  # smaller foreground specks are dropped (≈ 80 px at 40×)
    distance_smooth_um: float = 0.25  # Gaussian σ on the distance map
    h_um: float = 0.25  # h-maxima height: shallower bumps are no separate nucleus
    min_distance_um: float = 1.5  # ... nor are maxima closer than this
    compactness: float = 0.0  # plain watershed


def _px(length_um: float, mpp: float) -> float:
    return length_um / mpp


def _min_area_px(config: ClassicalConfig, mpp: float) -> int:
    """The smallest instance kept, in whole pixels."""
    return int(_px(_px(config.min_area_um2, mpp), mpp))


def foreground(rgb: np.ndarray, mpp: float, config: ClassicalConfig) -> np.ndarray:
    """Nuclear foreground: Otsu on the smoothed hematoxylin density, cleaned up."""
    hematoxylin = ndimage.gaussian_filter(stain.hed(rgb)[..., 0], _px(config.smooth_um, mpp))
    mask = hematoxylin > filters.threshold_otsu(hematoxylin)
    radius = int(round(_px(config.opening_um, mpp)))
    if radius > 0:
        mask = ndimage.binary_opening(mask, morphology.disk(radius).astype(bool))
    mask = ndimage.binary_fill_holes(mask)
    components, _ = ndimage.label(mask)
    areas = np.bincount(components.ravel())
    keep = areas >= _px(_px(config.min_area_um2, mpp), mpp)
    keep[0] = False
    return keep[components]


def segment(rgb: np.ndarray, mpp: float = DEFAULT_MPP,
            config: ClassicalConfig = ClassicalConfig()) -> np.ndarray:
    """Instance labels of the nuclei in an H&E image by the classical pipeline.

    Args:
      rgb: (H, W, 3) uint8 RGB.
      mpp: µm per pixel of `rgb` (MoNuSeg at 40×: 0.25).
      config: the baseline's settings.

    Returns:
      (H, W) uint32 instance ids, 0 = background, 1..N consecutive.

    Raises:
      ValueError: if `rgb` is not (H, W, 3) uint8 or `mpp` is not positive.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"classical baseline: expected (H, W, 3) uint8 RGB, got "
                         f"{rgb.dtype} {rgb.shape}")
    if not mpp > 0:
        raise ValueError(f"classical baseline: mpp={mpp!r}: expected > 0")
    mask = foreground(rgb, mpp, config)
    distance = ndimage.gaussian_filter(ndimage.distance_transform_edt(mask),
                                       _px(config.distance_smooth_um, mpp))
    peaks = morphology.h_maxima(distance, _px(config.h_um, mpp)).astype(bool) & mask
    # h-maxima closer than min_distance belong to one nucleus: merge them by dilation.
    radius = max(int(round(_px(config.min_distance_um, mpp) / 2)), 1)
    markers, _ = ndimage.label(
        ndimage.binary_dilation(peaks, morphology.disk(radius).astype(bool)) & mask)
    labels = sk_segmentation.watershed(-distance, markers, mask=mask,
                                       compactness=config.compactness)
    # Foreground blobs that got no marker (too flat) are kept whole.
    orphans, _ = ndimage.label(mask & (labels == 0))
    labels = np.where(orphans > 0, orphans + labels.max(), labels)
    return watershed.filter_by_area(labels.astype(np.uint32), _min_area_px(config, mpp),
                                    rgb.shape[0] * rgb.shape[1])


def true_counts(labels: np.ndarray, config: ClassicalConfig, mpp: float) -> np.ndarray:
    """Per instance map of `labels` (B, H, W), the instances of at least the baseline's
    smallest area (`min_area_um2`): the nuclei it could find."""
    min_px = _min_area_px(config, mpp)
    return np.array([int((np.bincount(ids.ravel())[1:] >= min_px).sum()) for ids in labels])


def count_score(images: np.ndarray, labels: np.ndarray, config: ClassicalConfig,
                mpp: float) -> dict:
    """How well the baseline with `config` counts and segments images of known instances.

    Scores settings without real labels: on synthetic patches against their own instance
    maps (benchmarks/count_settings.py). `mean_abs_log` is the mean |log((found + 1) /
    (true + 1))| per image, true from `true_counts`; `aji` the mean AJI.
    """
    truth = true_counts(labels, config, mpp)
    found, ajis = [], []
    for image, ids in zip(images, labels):
        predicted = segment(image, mpp, config)
        found.append(int(predicted.max()))
        ajis.append(metrics.image_metrics(ids.astype(np.int64),
                                          predicted.astype(np.int64))["aji"])
    found = np.array(found, float)
    return {"h_um": config.h_um, "smooth_um": config.distance_smooth_um,
            "mean_abs_log": float(np.mean(np.abs(np.log((found + 1) / (truth + 1))))),
            "count_ratio": float(found.sum() / max(1, truth.sum())),
            "aji": float(np.mean(ajis))}
