"""Foreground and background textures of a synthetic patch (paper Fig. 3; release
`mask2image_otsu.py`), as float32 colour planes (3, H, W) and uint8 0/255 masks.

Per-pixel random fields come from a fixed noise bank (built once per process from a fixed
seed) read at a random offset: the same distribution per patch as fresh draws, without
drawing ~10⁵ random numbers per patch. Chains of per-pixel steps are fused into single
OpenCV calls (`addWeighted`, `multiply(scale=)`); the maths is written next to each.
Fixes of the release's bugs: `aug_color` jitters each channel around that channel's mean
(the release took the mean per row), and the "average size" that picks the transparency is
the true mean nucleus area (the release summed the cumulative union area).
"""

import functools
import math
from typing import Tuple

import cv2
import numpy as np
from skimage import color as skcolor

from simgan_histo.synthesis import draws

_BANK_SEED = 20190616  # any fixed value: the bank must be identical in every worker
_NUCLEAR_NOISE = np.array([3.2, 2.6, 5.2], np.float32)  # per-pixel noise amplitude (release)
# rgb = exp(log(1e-6) · stains @ rgb_from_hed): a stain change is a gain exp(k · Δstain).
_STAIN_TO_LOG_RGB = (np.log(1e-6) * skcolor.rgb_from_hed[:2]).astype(np.float64)
_RING = np.ones((3, 3), np.uint8)
RELEASE_CLEARING_PX = 800.0  # the release's first clearing threshold (`transpar_per`)
F32 = cv2.CV_32F


@functools.lru_cache(maxsize=4)
def noise_bank(side: int) -> Tuple[np.ndarray, np.ndarray]:
    """(uniform float32 (3, side, side) in [0, 1), bytes uint8 (side, side)), fixed seed."""
    rng = np.random.default_rng(_BANK_SEED + side)
    return (rng.random((3, side, side), dtype=np.float32),
            rng.integers(0, 256, (side, side), dtype=np.uint8))


def _bank_window(rng, bank: np.ndarray, height: int, width: int) -> np.ndarray:
    side = bank.shape[-1]
    y, x = draws.randint(rng, 0, side - height + 1), draws.randint(rng, 0, side - width + 1)
    return bank[..., y:y + height, x:x + width]


def uniform_field(rng, height: int, width: int) -> np.ndarray:
    """(3, height, width) uniform [0, 1) view into the noise bank at a random offset."""
    return _bank_window(rng, noise_bank(max(512, 2 * max(height, width)))[0], height, width)


def byte_field(rng, height: int, width: int) -> np.ndarray:
    """(height, width) uniform uint8 view into the noise bank at a random offset."""
    return _bank_window(rng, noise_bank(max(512, 2 * max(height, width)))[1], height, width)


@functools.lru_cache(maxsize=8)
def _blocky_bank(side: int, scale: int) -> np.ndarray:
    cells = -(-side // scale)
    base = np.random.default_rng(_BANK_SEED + 7 * scale + side).integers(
        0, 256, (cells, cells), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(base, scale, 0), scale, 1)[:side, :side])


def blocky_field(rng, size: int, scale: int) -> np.ndarray:
    """(size, size) uniform uint8 noise constant on scale × scale blocks: a window of a
    fixed, pre-upsampled bank at a random block offset (the same field as a random coarse
    field upsampled by nearest neighbour, without the per-patch resize)."""
    bank = _blocky_bank(max(512, 2 * size), scale)
    cells = (bank.shape[0] - size) // scale + 1
    y, x = draws.randint(rng, 0, cells) * scale, draws.randint(rng, 0, cells) * scale
    return bank[y:y + size, x:x + size]


def jitter_params(rng, magnitude: float, means) -> Tuple[list, list]:
    """Release `aug_color` as x·scale + offset: per channel, scale U(1 ± 0.09·m) about the
    channel mean, shift U(±6·m). Python floats (3-element numpy arithmetic costs more)."""
    draws_ = rng.random(6).tolist()
    scale = [1.0 + (u * 2.0 - 1.0) * (0.09 * magnitude) for u in draws_[:3]]
    offset = [float(mean) * (1.0 - k) + (u * 2.0 - 1.0) * (6.0 * magnitude)
              for mean, k, u in zip(means, scale, draws_[3:])]
    return scale, offset


def background(rng, planes: np.ndarray, stain: np.ndarray, stain_scale: np.ndarray,
               means: np.ndarray, config) -> np.ndarray:
    """Nucleus-free background B with H/E stain jitter and colour jitter, (3, H, W) float32.

    Stain (DESIGN §7): H' = H·(1 + a) + b, E' = E·(1 + c), a, c ~ U(±stain_scale_jitter),
    b ~ U(0, hematoxylin_shift_max) (the release's `add_h_color`); in RGB this is exactly
    the per-pixel gain exp(k_H·(a·H + b) + k_E·c·E). Then `aug_color` (x·s + o).

    Args:
      planes: (3, H, W) uint8 background; stain: (2, H, W) uint8 H and E in units of
        `stain_scale`; means: per-channel means for the colour jitter.
    """
    jitter = config.stain_scale_jitter
    h_gain, e_gain = (rng.random(2) * 2.0 - 1.0) * jitter
    h_shift = rng.random() * config.hematoxylin_shift_max
    scale, offset = jitter_params(rng, config.color_jitter, means)
    # float32 copies first: OpenCV's mixed uint8/float32 arithmetic is ~3× slower.
    out = planes.astype(np.float32)
    hematoxylin, eosin = stain.astype(np.float32)
    for channel in range(3):
        k_h, k_e = _STAIN_TO_LOG_RGB[0, channel], _STAIN_TO_LOG_RGB[1, channel]
        # exponent = k_H·a·H + k_E·c·E + k_H·b + log(s): one fused pass.
        exponent = cv2.addWeighted(hematoxylin, k_h * h_gain * stain_scale[0], eosin,
                                   k_e * e_gain * stain_scale[1],
                                   k_h * h_shift + math.log(scale[channel]))
        cv2.exp(exponent, exponent)
        plane = out[channel]
        plane *= exponent
        plane += np.float32(offset[channel])
    return out


def smooth_field(rng, size: int) -> np.ndarray:
    """(size, size) smooth multiplicative field 0.66·(c − 0.5) + 1 (release).

    A 2–8 grid of uniforms, upsampled and blurred by size/5 (the release's 460/5 kernel,
    scaled; blurred at 1/4 resolution, the same low-pass field). The release drew one
    field per channel, which swings the hue by up to ±33 %, far outside H&E; here the field
    is shared by the channels (their own variation is the colour jitter's).
    """
    grid = draws.randint(rng, 2, 9)
    small = max(8, size // 4)
    coarse = rng.random((grid, grid), dtype=np.float32) * np.float32(0.66) + np.float32(0.67)
    field = cv2.resize(coarse, (small, small), interpolation=cv2.INTER_LINEAR)
    kernel = max(1, small // 5)
    field = cv2.blur(field, (kernel, kernel), borderType=cv2.BORDER_REFLECT)
    return cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)


def _symmetric(half: np.ndarray) -> np.ndarray:
    """Taps (..., 2n − 1) mirrored about the last of `half` (..., n), normalised to sum 1.

    The blurs use symmetric random kernels: OpenCV filters with symmetric kernels ~35 %
    faster, and an asymmetric random kernel only adds a random sub-pixel shift."""
    taps = np.concatenate([half, half[..., -2::-1]], axis=-1)
    return taps / taps.sum(axis=-1, keepdims=True)


def _random_blur(rng, plane: np.ndarray) -> np.ndarray:
    """Release per-channel blur: a random positive 3×3 (p 0.7) or 5×5 kernel; here the
    outer product of two symmetric random positive 1-D kernels (separable: a third of the
    work)."""
    radius = 1 if draws.chance(rng, 0.7) else 2
    taps = _symmetric(rng.random((2, radius + 1), dtype=np.float32) + np.float32(1.0))
    return cv2.sepFilter2D(plane, -1, taps[0], taps[1], borderType=cv2.BORDER_REFLECT)


def nuclear_texture(rng, eosin: np.ndarray, colour: np.ndarray, config) -> np.ndarray:
    """Nuclear texture A (3, H, W) float32 (paper §4.1, release step 5).

    The eosin channel e of a real crop modulates the sub-segmentation colour around its
    mean, t = 1 + g·(e − ē)/255, times a smooth random field f; per channel
    A_c = colour_c·s_c·t·f + o_c + noise_c (noise ±(3.2, 2.6, 5.2), colour jitter s, o),
    then a random blur of each channel with p 0.5.
    """
    size = eosin.shape[0]
    gain = config.texture_gain / 255.0
    field = smooth_field(rng, size)
    # t·f = g·e·f + (1 − g·ē)·f
    modulated = cv2.multiply(eosin, field, scale=gain, dtype=F32)
    cv2.scaleAdd(field, 1.0 - gain * cv2.mean(eosin)[0], modulated, dst=modulated)
    noise = uniform_field(rng, size, size)
    scale, offset = jitter_params(rng, config.color_jitter, colour)
    planes = np.empty((3, size, size), np.float32)
    for channel in range(3):
        amplitude = float(_NUCLEAR_NOISE[channel])
        cv2.addWeighted(modulated, float(colour[channel]) * scale[channel], noise[channel],
                        2.0 * amplitude, float(offset[channel]) - amplitude,
                        dst=planes[channel], dtype=F32)
        if draws.chance(rng, 0.5):
            planes[channel] = _random_blur(rng, planes[channel])
    return planes


def transparency_percentile(rng, mean_area: float, area_px: Tuple[float, float]) -> float:
    """Share of nuclear pixels cleared (release `transpar_per`), from the mean nucleus area
    and the two area thresholds (`SynthesisConfig.clearing_area_px`)."""
    small, large = area_px
    if mean_area < small:
        return draws.uniform(rng, 0, 15)
    if mean_area > large:
        return 10 + draws.uniform(rng, 0, 42)
    return draws.uniform(rng, 0, 15) if draws.chance(rng, 0.4) else draws.uniform(rng, 0, 42)


def _salt_and_pepper(rng, texture: np.ndarray) -> np.ndarray:
    """Release: 0–6 % salt-and-pepper noise at two scales on the clearing texture."""
    size = texture.shape[0]
    out = texture
    for scale in (1, 2):
        amount = 255.0 * draws.uniform(rng, 0.0, 0.06) / 2
        coarse = byte_field(rng, size, size) if scale == 1 else blocky_field(rng, size, scale)
        out = cv2.subtract(out, cv2.compare(coarse, amount, cv2.CMP_LT))  # pepper → 0
        out = cv2.add(out, cv2.compare(coarse, 255.0 - amount, cv2.CMP_GT))  # salt → 255
    return out


def _percentile_threshold(texture: np.ndarray, percentile: float) -> int:
    """The `percentile` of `texture`. The release took it over the nuclear pixels only;
    the texture comes from an unrelated crop, so its values inside the nuclei follow the
    same distribution as over the whole crop, which needs no mask."""
    histogram = cv2.calcHist([texture], [0], None, [256], [0, 256]).ravel()
    return int(np.searchsorted(np.cumsum(histogram), percentile / 100.0 * texture.size))


def size_scale(area_px: Tuple[float, float]) -> float:
    """Linear size of the nuclei that `area_px` (the clearing thresholds) are set for, relative
    to the release's: the factor for the release's other pixel constants."""
    return math.sqrt(area_px[0] / RELEASE_CLEARING_PX)


def rim_width(rng, area_px: Tuple[float, float]) -> int:
    """Width of the optional kept rim of a cleared nucleus: the release's U{5..16} px, which
    assume its nuclei, scaled like the area thresholds (`size_scale`)."""
    return max(3, round(draws.randint(rng, 5, 17) * size_scale(area_px)))


def mixing_mask(rng, nucleus: np.ndarray, clearing: np.ndarray, mean_area: float,
                area_px: Tuple[float, float]) -> Tuple[np.ndarray, float]:
    """Opaque nuclear pixels: chromatin clearing with a kept edge (release step 6).

    Args:
      nucleus: (H, W) uint8 0/255 nuclear mask.
      clearing: (H, W) uint8 eosin texture of a random tile (where chromatin clears).
      mean_area: mean nucleus area, px.
      area_px: the clearing's area thresholds (`transparency_percentile`).

    Returns:
      ((H, W) uint8 0/255 opaque mask, transparency percentile used).
    """
    transparency = transparency_percentile(rng, mean_area, area_px)
    texture = _salt_and_pepper(rng, clearing)
    threshold = _percentile_threshold(texture, transparency)
    solid = cv2.compare(texture, threshold, cv2.CMP_GE)  # chromatin not cleared
    edge = cv2.subtract(nucleus, cv2.erode(nucleus, _RING))
    if draws.chance(rng, 0.66):
        edge = cv2.dilate(edge, _RING)
    if 10 < transparency < 30 and draws.chance(rng, 0.3):
        width = rim_width(rng, area_px)
        rim = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
        edge = cv2.bitwise_or(edge, cv2.subtract(nucleus, cv2.erode(nucleus, rim)))
    if transparency >= 20:
        keep = cv2.compare(byte_field(rng, *edge.shape), 255.0 * draws.uniform(rng, 0, 0.3),
                           cv2.CMP_GE)
        edge = cv2.bitwise_and(edge, keep)
    # A coarse random "recall" mask (1/5 resolution) re-fills parts of the nuclei.
    coarse = blocky_field(rng, nucleus.shape[0], 5)
    recall = cv2.compare(coarse, 150 + draws.uniform(rng, 0, 100), cv2.CMP_GT)
    opaque = cv2.bitwise_and(nucleus, cv2.bitwise_or(solid, recall))
    return cv2.bitwise_or(opaque, edge), transparency


def _peaked_kernel(rng, radius: int, centre_boost: Tuple[float, float]) -> np.ndarray:
    """Symmetric random taps U(2, 3), the centre boosted by U(centre_boost), sum 1."""
    half = rng.random(radius + 1, dtype=np.float32) + np.float32(2.0)
    half[radius] += np.float32(draws.uniform(rng, *centre_boost))
    return _symmetric(half)


def blur_boundary(rng, opaque: np.ndarray, radius: int) -> np.ndarray:
    """Soft mixing weights M in [0, 1], (H, W) float32 (release `interpolate_mask`, step 7).

    A random positive kernel (uniform + 2, centre boosted) of the given radius; here
    separable (the outer product of two such symmetric 1-D kernels), which keeps its
    support, positivity and centre peak at a fraction of the cost. With p 0.85 two random
    sub-rectangles are re-blurred with a sharply peaked 5×5 kernel.
    """
    row = _peaked_kernel(rng, radius, (1.0, 4.0))
    col = _peaked_kernel(rng, radius, (1.0, 4.0)) / np.float32(255.0)
    weights = cv2.sepFilter2D(opaque, F32, row, col, borderType=cv2.BORDER_REFLECT)
    if draws.chance(rng, 0.85):
        size = weights.shape[0]
        for _ in range(2):
            y0, x0 = draws.randint(rng, 0, size - 8), draws.randint(rng, 0, size - 8)
            y1, x1 = y0 + draws.randint(rng, 8, size - y0 + 1), x0 + draws.randint(
                rng, 8, size - x0 + 1)
            peak = _peaked_kernel(rng, 2, (4.0, 8.0))
            region = weights[y0:y1, x0:x1]  # filtered in place, its own border reflected
            cv2.sepFilter2D(region, -1, peak, peak, dst=region, borderType=cv2.BORDER_REFLECT)
    return weights


def blur_radius(rng, transparency: float, mean_area: float,
                area_px: Tuple[float, float]) -> int:
    """Boundary-blur radius 3/5/7: wider for large or cleared nuclei (the release's choice
    depends on both; its exact rule is not documented, this keeps its direction). The area
    steps are the clearing's (`area_px`), and the radii scale with them (linear size), so
    that a preset with smaller nuclei does not blur them relatively more (`size_scale`)."""
    small, large = area_px
    choices = (3, 5) if mean_area < small else (3, 5, 7) if mean_area < large else (5, 7)
    if transparency > 30:
        choices = choices[-2:]
    return max(1, round(choices[draws.randint(rng, 0, len(choices))] * size_scale(area_px)))
