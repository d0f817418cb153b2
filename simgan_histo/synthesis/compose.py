"""One GAN-free patch (paper Fig. 3): mask, background, distractors, nuclei, composite.

`I = A·M + B·(1 − M)` (paper §4.1) with B the nucleus-free background of a tile crop, A the
nuclear texture and M the blurred mixing mask; the release's two distractor types (spiky
speckle and faint nucleus-like smudges) are blended into B first and labelled background.

The release synthesised a canvas of patch + 2·margin and cropped the margin. Nuclei are
placed on that whole canvas (so the patch border cuts them), but the masks and their blurs
only need the patch plus the reach of the filters (a window of patch + 2·`WINDOW_PAD`), and
the background and nuclear texture only the patch itself.

A batch is made in groups: each patch draws its plan, the group's nuclei are placed in one
vectorised pass (`placement.py`), then each patch is rendered into its row of the output.

A patch is a pure function of (tiles, config, seed, index): its random generator is
`np.random.default_rng([seed, index])`.
"""

import dataclasses
import time
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from simgan_histo.synthesis import distractors
from simgan_histo.synthesis import draws
from simgan_histo.synthesis import labels as labels_lib
from simgan_histo.synthesis import placement
from simgan_histo.synthesis import polygons
from simgan_histo.synthesis import textures

WINDOW_PAD = 10  # >= the widest filter reach (smudge blur radius 9)
GROUP = 32  # patches whose nuclei are placed in one vectorised pass
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


def composite(background: np.ndarray, nuclear: np.ndarray, weights: np.ndarray,
              out: Optional[np.ndarray] = None) -> np.ndarray:
    """I = A·M + B·(1 − M) (paper §4.1) as interleaved uint8 (h, w, 3) (into `out` if
    given), from planar (3, h, w) B and A. Overwrites `nuclear`."""
    channels = []
    for channel in range(3):
        plane = nuclear[channel]
        cv2.subtract(plane, background[channel], dst=plane)
        cv2.multiply(plane, weights, dst=plane)
        cv2.add(plane, background[channel], dst=plane)
        channels.append(cv2.convertScaleAbs(plane))  # rounds and saturates
    if out is None:
        return cv2.merge(channels)
    return cv2.merge(channels, out)


def synthesize_patch(tiles: Sequence, config, seed: int, index: int,
                     timer: Optional[StageTimer] = None) -> Dict[str, np.ndarray]:
    """Patch `index` of stream `seed`: {image, reference, mask, labels, source}."""
    return {name: value[0] for name, value in
            synthesize_batch(tiles, config, seed, [index], timer).items()}


def allocate(count: int, size: int) -> Dict[str, np.ndarray]:
    """Empty DESIGN §3 patch fields for `count` patches of side `size`."""
    return {"image": np.empty((count, size, size, 3), np.uint8),
            "reference": np.empty((count, size, size, 3), np.uint8),
            "mask": np.empty((count, size, size), np.uint8),
            "labels": np.empty((count, size, size), np.uint16),
            "source": np.empty(count, np.int32)}


def synthesize_batch(tiles: Sequence, config, seed: int, indices: Sequence[int],
                     timer: Optional[StageTimer] = None) -> Dict[str, np.ndarray]:
    """Patches `indices` of stream `seed`, stacked: {image, reference, mask, labels, source}.

    Per group of GROUP patches: each patch draws its plan (tile, positions, nucleus count
    and size) from its own generator, their nuclei are placed in one vectorised pass
    (`placement.place_nuclei`) or taken from the tile's layout (`layout_source`), then
    each patch is rendered. Patch i depends only on
    (tiles, config, seed, i), not on the other indices.
    """
    indices = [int(i) for i in indices]
    out = allocate(len(indices), config.patch_size)
    for start in range(0, len(indices), GROUP):
        plans = [_plan(tiles, config, seed, i) for i in indices[start:start + GROUP]]
        _lap(timer, "positions")
        if config.layout_source != "polygons":
            canvas = config.patch_size + 2 * config.margin_px
            vertices = [tiles[plan.tile_index].layout.in_canvas(
                plan.patch[0] - config.margin_px, plan.patch[1] - config.margin_px, canvas)
                for plan in plans]
        else:
            vertices = placement.place_nuclei(
                [plan.rng for plan in plans], config, np.stack([plan.tissue for plan in plans]),
                [plan.count for plan in plans], [plan.bias for plan in plans])
        _lap(timer, "mask_sampling")
        for row, (plan, polygons_) in enumerate(zip(plans, vertices), start):
            _render(plan, polygons_, tiles, config, out, row, timer)
    return out


@dataclasses.dataclass
class _Plan:
    """What a patch draws before its nuclei are placed."""

    rng: np.random.Generator
    tile_index: int
    patch: Tuple[int, int]  # (x, y) of the patch in the tile
    reference: Tuple[int, int]  # (x, y) of the reference crop
    count: int  # nuclei wanted
    bias: float  # radius multiplier
    tissue: np.ndarray  # tissue map of the synthesis canvas (patch + margin)


def _plan(tiles: Sequence, config, seed: int, index: int) -> _Plan:
    rng = np.random.default_rng([seed, index])
    tile_index = draws.randint(rng, 0, len(tiles))
    tile = tiles[tile_index]
    size, margin = config.patch_size, config.margin_px
    patch, reference = tissue_positions(rng, tile, size, margin, config.min_tissue_fraction)
    x, y = patch
    canvas = size + 2 * margin
    if config.count_source == "classical":
        count = polygons.classical_count(rng, config, tile.nuclei_in(x - margin, y - margin,
                                                                     canvas), canvas)
    else:
        count = polygons.nucleus_count(rng, config, tile.density, canvas)
    bias = polygons.size_bias(rng, config, tile.density)
    tissue = tile.tissue[y - margin:y + size + margin, x - margin:x + size + margin]
    return _Plan(rng, tile_index, patch, reference, count, bias, tissue)


def _render(plan: _Plan, vertices: np.ndarray, tiles: Sequence, config,
            out: Dict[str, np.ndarray], row: int, timer: Optional[StageTimer]) -> None:
    """Textures, composite and labels of one patch into row `row` of `out`."""
    rng, tile = plan.rng, tiles[plan.tile_index]
    size, margin = config.patch_size, config.margin_px
    pad = min(WINDOW_PAD, margin)
    window, (px, py) = size + 2 * pad, plan.patch
    view = np.s_[py - pad:py + size + pad, px - pad:px + size + pad]
    labels, boxes = labels_lib.rasterise(vertices - np.float32(margin - pad), window,
                                         keep=(pad, pad, pad + size, pad + size),
                                         with_boxes=True)
    _lap(timer, "rasterise")
    # Background and nuclear texture are needed on the patch only; the masks and their
    # blur on the window (nuclei beyond the patch border reach into it).
    crop = np.s_[:, py:py + size, px:px + size]
    planes = textures.background(rng, tile.background[crop], tile.stain[crop],
                                 tile.stain_scale, tile.background_mean, config)
    _lap(timer, "background")
    area_scale = ((size + 2 * margin) / polygons.RELEASE_CANVAS_PX) ** 2
    on_tissue = tile.tissue[view]
    distractors.add_smudges(rng, planes, tile, config, area_scale, plan.bias, on_tissue, pad)
    distractors.add_speckle(rng, planes, tile, config, area_scale, on_tissue, pad)
    _lap(timer, "distractors")
    nuclear = textures.nuclear_texture(rng, _random_crop(rng, tile.eosin, size),
                                       tile.nuclear_colour, config)
    _lap(timer, "nuclear_texture")
    other = tiles[draws.randint(rng, 0, len(tiles))]
    mean_area = float(polygons.polygon_areas(vertices).mean()) if len(vertices) else 0.0
    opaque, transparency = textures.mixing_mask(
        rng, cv2.compare(labels, 0, cv2.CMP_GT), _random_crop(rng, other.eosin, window),
        mean_area, config.clearing_area_px)
    _lap(timer, "chromatin_clearing")
    weights = textures.blur_boundary(rng, opaque,
                                     textures.blur_radius(rng, transparency, mean_area,
                                                         config.clearing_area_px))
    _lap(timer, "boundary_blur")
    composite(planes, nuclear, weights[pad:pad + size, pad:pad + size], out["image"][row])
    _lap(timer, "composite")
    labels_lib.instances_and_mask(labels[pad:pad + size, pad:pad + size],
                                  np.minimum(np.maximum(boxes - pad, 0), size),
                                  out=(out["labels"][row], out["mask"][row]))
    _lap(timer, "labels")
    rx, ry = plan.reference
    out["reference"][row] = tile.rgb[ry:ry + size, rx:rx + size]
    out["source"][row] = plan.tile_index
    _lap(timer, "reference")


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
