"""One GAN-free patch (paper Fig. 3): mask, background, distractors, nuclei, composite.

`I = A·M + B·(1 − M)` (paper §4.1) with B the nucleus-free background of a tile crop, A the
nuclear texture and M the blurred mixing mask; the release's two distractor types (spiky
speckle and faint nucleus-like smudges) are blended into B first and labelled background.

The release synthesised a canvas of patch + 2·margin and cropped the margin. Nuclei are
placed on that whole canvas (so the patch border cuts them), but every texture step only
needs the patch plus the reach of its filters, so pixels are computed on a window of
patch + 2·`WINDOW_PAD` instead of the full canvas.

A patch is a pure function of (tiles, config, seed, index): its random generator is
`np.random.default_rng([seed, index])`.
"""

import time
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from simgan_histo.synthesis import draws
from simgan_histo.synthesis import labels as labels_lib
from simgan_histo.synthesis import polygons
from simgan_histo.synthesis import textures

WINDOW_PAD = 10  # >= the widest filter reach (smudge blur radius 9)
SPECKLE_RADIUS = (6.0, 11.0)  # release noise type 1 star radius, px
TISSUE_TRIES = 32  # position redraws to find crops on tissue


class StageTimer:
    """Accumulates wall time per named stage (for the benchmark); `lap` ends a stage."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def _lap(timer: Optional[StageTimer], stage: str) -> None:
    if timer is not None:
        timer.lap(stage)


def disjoint_positions(rng, length: int, size: int, first: Tuple[int, int]) -> Tuple[int, int]:
    """Positions a in [first] and b in [0, length − size] with |a − b| >= size, uniform.

    Raises ValueError when no such pair exists (a tile too small along this axis).
    """
    low, high = first
    feasible = [(low, min(high, length - 2 * size)), (max(low, size), high)]
    feasible = [(a, b) for a, b in feasible if a <= b]
    if not feasible:
        raise ValueError(f"no two disjoint {size}-px crops fit in {length} px")
    lo, hi = feasible[draws.weighted_index(rng, [b - a + 1 for a, b in feasible])]
    a = draws.randint(rng, lo, hi + 1)
    options = [(x, y) for x, y in ((0, a - size), (a + size, length - size)) if x <= y]
    x, y = options[draws.weighted_index(rng, [y - x + 1 for x, y in options])]
    return a, draws.randint(rng, x, y + 1)


def patch_positions(rng, shape, size: int, margin: int):
    """(x, y) of a patch whose canvas (margin around it) fits the tile, and (x, y) of a
    second patch-sized crop that does not overlap it (the reference)."""
    lengths = shape[::-1]  # (width, height)
    axes = [axis for axis, length in enumerate(lengths) if length >= 2 * size + margin]
    if not axes:
        raise ValueError(f"tile {lengths} too small for two disjoint {size}-px crops")
    axis = axes[draws.randint(rng, 0, len(axes))]
    first, second = [0, 0], [0, 0]
    first[axis], second[axis] = disjoint_positions(
        rng, lengths[axis], size, (margin, lengths[axis] - size - margin))
    other = 1 - axis
    first[other] = draws.randint(rng, margin, lengths[other] - size - margin + 1)
    second[other] = draws.randint(rng, 0, lengths[other] - size + 1)
    return tuple(first), tuple(second)


def tissue_positions(rng, tile, size: int, margin: int, min_share: float):
    """`patch_positions` redrawn (up to TISSUE_TRIES times) until both crops hold at least
    `min_share` tissue, else the draw whose poorer crop holds the most: on a slide with
    glass, uniform positions (release) waste patches on glass."""
    best, best_share = None, -1.0
    for _ in range(TISSUE_TRIES):
        first, second = patch_positions(rng, tile.shape, size, margin)
        share = min(tile.tissue_share(*first, size), tile.tissue_share(*second, size))
        if share > best_share:
            best, best_share = (first, second), share
        if share >= min_share:
            break
    return best


def _stochastic_round(rng, value: float) -> int:
    whole = int(np.floor(value))
    return whole + int(draws.chance(rng, value - whole))


def _blend(planes: np.ndarray, colour: np.ndarray, alpha: np.ndarray, box) -> None:
    """planes = planes·(1 − alpha) + colour·alpha inside `box` (x0, y0, x1, y1), in place."""
    x0, y0, x1, y1 = box
    alpha = alpha[y0:y1, x0:x1]
    keep = 1.0 - alpha
    for channel in range(3):
        region = planes[channel, y0:y1, x0:x1]
        cv2.multiply(region, keep, dst=region)
        cv2.scaleAdd(alpha, float(colour[channel]), region, dst=region)


def _layer(shapes: np.ndarray, size: int, blur: int, opacity: float, on_tissue: np.ndarray):
    """Blurred fill of `shapes` (on tissue only) times `opacity`, and the box it covers
    (x0, y0, x1, y1)."""
    alpha = cv2.bitwise_and(labels_lib.fill_union(shapes, size), on_tissue).astype(np.float32)
    reach = blur // 2 + 1
    xs, ys = shapes[..., 0], shapes[..., 1]
    x0, x1 = max(0, int(xs.min()) - reach), min(size, int(xs.max()) + reach + 2)
    y0, y1 = max(0, int(ys.min()) - reach), min(size, int(ys.max()) + reach + 2)
    if x1 > x0 and y1 > y0:
        region = alpha[y0:y1, x0:x1]
        region[...] = cv2.blur(region, (blur, blur)) * np.float32(opacity)
    return alpha, (x0, y0, x1, y1)


def add_smudges(rng, planes, tile, config, area_scale: float, bias: float,
                on_tissue: np.ndarray) -> None:
    """Release noise type 2: faint, strongly blurred nucleus-like shapes, background label.

    Blurred rimless and paler than nuclei, so they teach "smudge is background", never
    "pale nucleus is background" (DESIGN §7).
    """
    count = _stochastic_round(rng, draws.randint(rng, 0, config.pale_blob_max + 1) * area_scale)
    if count == 0:
        return
    size = planes.shape[1]
    low, high = config.nucleus_radius_range
    radii = (low + (high - low) * rng.random(count)) * bias
    shapes, _ = polygons.scaled_shapes(rng, polygons.shape_bank(config),
                                       rng.random((count, 2)) * size, radii)
    radius = 7 if draws.chance(rng, 0.5) else 9
    alpha, box = _layer(shapes, size, 2 * radius + 1, draws.uniform(rng, 0.3, 0.7), on_tissue)
    percentile = (tile.nuclear_percentile + 35) // 2 - draws.randint(rng, 12, 26)
    _blend(planes, tile.colour_by_h[int(np.clip(percentile, 0, 99))], alpha, box)


def add_speckle(rng, planes, tile, config, area_scale: float, on_tissue: np.ndarray) -> None:
    """Release noise type 1: clusters of small spiky stars, semi-transparent, background."""
    count = _stochastic_round(rng, draws.randint(rng, 0, config.speckle_max + 1) * area_scale)
    if count == 0:
        return
    size = planes.shape[1]
    clusters = rng.random((draws.randint(rng, 1, 4), 2)) * size
    centers = clusters[(rng.random(count) * len(clusters)).astype(int)]
    centers = (centers + rng.normal(0.0, size / 8.0, (count, 2))).round().astype(np.int64)
    sprites, offsets = polygons.star_sprites(SPECKLE_RADIUS)
    picks = (rng.random(count) * len(sprites)).astype(np.int64)
    stars = np.zeros((size, size), np.uint8)
    corners = centers + offsets[picks]
    for (x, y), pick in zip(corners.tolist(), picks.tolist()):
        sprite = sprites[pick]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + sprite.shape[1], size), min(y + sprite.shape[0], size)
        if x1 > x0 and y1 > y0:
            region = stars[y0:y1, x0:x1]
            np.maximum(region, sprite[y0 - y:y1 - y, x0 - x:x1 - x], out=region)
    reach = 2 * int(np.ceil(2 * SPECKLE_RADIUS[1])) + 3  # widest sprite plus the blur
    x0, y0 = (max(0, int(v) - 2) for v in corners.min(axis=0))
    x1, y1 = (min(size, int(v) + reach) for v in corners.max(axis=0))
    alpha = cv2.bitwise_and(stars, on_tissue).astype(np.float32)
    if x1 > x0 and y1 > y0:
        region = alpha[y0:y1, x0:x1]
        region[...] = cv2.blur(region, (3, 3)) * np.float32(draws.uniform(rng, 0.1, 0.35) / 255)
    percentile = tile.nuclear_percentile - draws.uniform(rng, 10, 30)
    _blend(planes, tile.colour_by_h[int(np.clip(percentile, 0, 99))], alpha, (x0, y0, x1, y1))


def composite(background: np.ndarray, nuclear: np.ndarray, weights: np.ndarray,
              crop: slice) -> np.ndarray:
    """I = A·M + B·(1 − M) (paper §4.1), cropped, as interleaved uint8 (h, w, 3)."""
    channels = []
    for channel in range(3):
        plane = nuclear[channel]
        cv2.subtract(plane, background[channel], dst=plane)
        cv2.multiply(plane, weights, dst=plane)
        cv2.add(plane, background[channel], dst=plane)
        channels.append(cv2.convertScaleAbs(plane[crop, crop]))  # rounds and saturates
    return cv2.merge(channels)


def synthesize_patch(tiles: Sequence, config, seed: int, index: int,
                     timer: Optional[StageTimer] = None) -> Dict[str, np.ndarray]:
    """Patch `index` of stream `seed`: {image, reference, mask, labels, source}."""
    rng = np.random.default_rng([seed, index])
    tile_index = draws.randint(rng, 0, len(tiles))
    tile = tiles[tile_index]
    size, margin = config.patch_size, config.margin_px
    canvas, pad = size + 2 * margin, min(WINDOW_PAD, margin)
    window = size + 2 * pad
    (px, py), (rx, ry) = tissue_positions(rng, tile, size, margin, config.min_tissue_fraction)
    view = np.s_[py - pad:py + size + pad, px - pad:px + size + pad]
    _lap(timer, "positions")

    count = polygons.nucleus_count(rng, config, tile.density, canvas)
    bias = polygons.size_bias(rng, config, tile.density)
    vertices = polygons.sample_nuclei(
        rng, config, tile.tissue[py - margin:py + size + margin, px - margin:px + size + margin],
        count, bias)
    _lap(timer, "mask_sampling")
    labels = labels_lib.rasterise(vertices - np.float32(margin - pad), window,
                                  keep=(pad, pad, pad + size, pad + size))
    _lap(timer, "rasterise")

    planes = textures.background(rng, tile.background[(slice(None),) + view],
                                 tile.stain[(slice(None),) + view], tile.stain_scale,
                                 tile.background_mean, config)
    _lap(timer, "background")
    area_scale = (canvas / polygons.RELEASE_CANVAS_PX) ** 2
    on_tissue = tile.tissue[view]
    add_smudges(rng, planes, tile, config, area_scale, bias, on_tissue)
    add_speckle(rng, planes, tile, config, area_scale, on_tissue)
    _lap(timer, "distractors")

    nuclear = textures.nuclear_texture(rng, _random_crop(rng, tile.eosin, window),
                                       tile.nuclear_colour, config)
    _lap(timer, "nuclear_texture")
    other = tiles[draws.randint(rng, 0, len(tiles))]
    mean_area = float(polygons.polygon_areas(vertices).mean()) if len(vertices) else 0.0
    opaque, transparency = textures.mixing_mask(
        rng, cv2.compare(labels, 0, cv2.CMP_GT), _random_crop(rng, other.eosin, window),
        mean_area)
    _lap(timer, "chromatin_clearing")
    weights = textures.blur_boundary(rng, opaque,
                                     textures.blur_radius(rng, transparency, mean_area))
    _lap(timer, "boundary_blur")
    image = composite(planes, nuclear, weights, slice(pad, pad + size))
    _lap(timer, "composite")

    instances, mask = labels_lib.instances_and_mask(labels[pad:pad + size, pad:pad + size])
    _lap(timer, "labels")
    reference = tile.rgb[ry:ry + size, rx:rx + size].copy()
    _lap(timer, "reference")
    return {"image": image, "reference": reference, "mask": mask, "labels": instances,
            "source": np.int32(tile_index)}


def _random_crop(rng, plane: np.ndarray, size: int) -> np.ndarray:
    y = draws.randint(rng, 0, plane.shape[0] - size + 1)
    x = draws.randint(rng, 0, plane.shape[1] - size + 1)
    return plane[y:y + size, x:x + size]


def real_pair(tiles: Sequence, config, seed: int, index: int) -> Dict[str, np.ndarray]:
    """Two non-overlapping patch-sized crops of one tile: a real pair (S′, S) for D."""
    rng = np.random.default_rng([seed, index, 1])
    tile_index = draws.randint(rng, 0, len(tiles))
    tile = tiles[tile_index]
    size = config.patch_size
    (ax, ay), (bx, by) = tissue_positions(rng, tile, size, 0, config.min_tissue_fraction)
    return {"image": tile.rgb[ay:ay + size, ax:ax + size].copy(),
            "reference": tile.rgb[by:by + size, bx:bx + size].copy(),
            "source": np.int32(tile_index)}
