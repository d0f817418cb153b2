"""A slide's plan: processing resolution, tissue region, tiles, and its stain statistics.

`plan_slide` turns the slide's size and µm/px, the tissue mask and the model's µm/px into a
`SlidePlan`: the downsample (model mpp ÷ slide mpp), the tissue's bounding box at processing
resolution and the overlapping tiles (`tiling.cover`) that hold tissue. `estimate_stain`
measures the Reinhard statistics once per slide; `read_tile` reads a tile's read window,
normalised.
"""

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
from absl import logging

from simgan_histo import stain
from simgan_histo.training import stain_target
from simgan_histo.wsi import tiling, tissue as tissue_lib

STAIN_SAMPLES = 16  # tiles whose centre crop feeds the slide's Reinhard statistics
STAIN_SAMPLE_PX = 512


@dataclasses.dataclass(frozen=True)
class SlidePlan:
    """Where and how a slide is processed. Region and tiles are in processing px."""

    name: str
    dimensions: Tuple[int, int]  # level-0 (width, height)
    slide_mpp: float
    model_mpp: float
    downsample: float  # level-0 px per processing px
    origin: Tuple[int, int]  # region corner in the slide's processing px
    shape: Tuple[int, int]  # region (height, width)
    tile_size: int
    tiles: Tuple[tiling.Tile, ...]  # tiles with tissue, row-major
    total_tiles: int

    def read_box(self, tile: tiling.Tile) -> Tuple[float, float, float, float]:
        """Level-0 box of the tile's read window."""
        x, y, width, height = tile.read
        return ((x + self.origin[0]) * self.downsample, (y + self.origin[1]) * self.downsample,
                width * self.downsample, height * self.downsample)

    def core_box(self, tile: tiling.Tile) -> Tuple[float, float, float, float]:
        """Level-0 box of the tile's core (write window)."""
        x, y, width, height = tile.write
        return ((x + self.origin[0]) * self.downsample, (y + self.origin[1]) * self.downsample,
                width * self.downsample, height * self.downsample)


def _tissue_region(tissue: tissue_lib.TissueMask, downsample: float, dimensions):
    """The tissue's bounding box as (origin, shape) in processing px (None if no tissue)."""
    rows, cols = np.nonzero(tissue.mask)
    if len(rows) == 0:
        return None
    scale_x, scale_y = tissue.downsample
    full_w = int(round(dimensions[0] / downsample))
    full_h = int(round(dimensions[1] / downsample))
    x0 = max(0, int(math.floor(cols.min() * scale_x / downsample)))
    y0 = max(0, int(math.floor(rows.min() * scale_y / downsample)))
    x1 = min(full_w, int(math.ceil((cols.max() + 1) * scale_x / downsample)))
    y1 = min(full_h, int(math.ceil((rows.max() + 1) * scale_y / downsample)))
    return (x0, y0), (max(1, y1 - y0), max(1, x1 - x0))


def plan_slide(name: str, dimensions, slide_mpp: float, tissue: tissue_lib.TissueMask,
               model_mpp: float, stride: int, config) -> SlidePlan:
    """Processing resolution, region (tissue bounding box) and the tiles holding tissue.

    Args:
      name: the slide's name (ids, file names).
      dimensions: level-0 (width, height).
      slide_mpp: level-0 µm/px.
      tissue: the tissue mask.
      model_mpp: µm/px the model expects.
      stride: tile sides are rounded up to a multiple of it.
      config: `WsiConfig`.
    """
    downsample = model_mpp / slide_mpp
    tile_size = int(math.ceil(config.tile_size_px / stride) * stride)
    region = _tissue_region(tissue, downsample, dimensions)
    plan = dict(name=name, dimensions=tuple(dimensions), slide_mpp=slide_mpp,
                model_mpp=model_mpp, downsample=downsample, tile_size=tile_size)
    if region is None:
        return SlidePlan(origin=(0, 0), shape=(0, 0), tiles=(), total_tiles=0, **plan)
    origin, shape = region
    tiles = tiling.cover(shape, tile_size, config.overlap_px, config.context_px)
    draft = SlidePlan(origin=origin, shape=shape, tiles=(), total_tiles=len(tiles), **plan)
    kept = tuple(tile for tile in tiles
                 if tissue.fraction(draft.core_box(tile)) > config.min_tissue_fraction)
    return dataclasses.replace(draft, tiles=kept)


def estimate_stain(slide, plan: SlidePlan) -> Optional[stain.Stats]:
    """LAB mean/std of the slide's stained pixels, from centre crops of up to 16 tiles.

    Estimated once per slide (per-tile statistics invent nuclei on empty tiles, field-notes
    §4 #7); crops are spread evenly over the tissue tiles; glass and white pixels are left
    out, as when the model's target was measured (`stain_target.tissue_stats`).
    """
    if not plan.tiles:
        return None
    step = max(1, len(plan.tiles) // STAIN_SAMPLES)
    found = []
    for tile in plan.tiles[::step][:STAIN_SAMPLES]:
        x, y, width, height = plan.core_box(tile)
        side = STAIN_SAMPLE_PX * plan.downsample
        box = (x + width / 2 - side / 2, y + height / 2 - side / 2, side, side)
        part = stain_target.tissue_stats(slide.read(*box, plan.downsample), 100)
        if part:
            found.append(part)
    if not found:
        return None
    return stain.pooled_stats([stats for stats, _ in found], [count for _, count in found])


def resolve_stain(method: str, model, estimate) -> Optional[Tuple[stain.Stats, stain.Stats]]:
    """(source, target) Reinhard statistics, or None for no normalisation.

    Args:
      method: "auto" (as the model says), "reinhard" or "none".
      model: the `SegmentationModel` (its `stain_target`).
      estimate: () -> the slide's statistics (or None); called only when needed.

    Raises:
      ValueError: "reinhard" was asked for but the model records no target.
    """
    if method == "auto":
        method = "reinhard" if model.stain_target is not None else "none"
    if method == "none":
        return None
    if model.stain_target is None:
        raise ValueError(f"stain_norm=reinhard but the model ({model.name}) records no Reinhard "
                         f"target in its inference.json; use --stain_norm=none")
    slide_stats = estimate()
    if slide_stats is None:
        logging.warning("no stained pixels to estimate Reinhard statistics: not normalising")
        return None
    return slide_stats, model.stain_target


def read_tile(slide, plan: SlidePlan, tile: tiling.Tile, stain_pair) -> np.ndarray:
    """The tile's read window at processing resolution, stain-normalised if asked."""
    rgb = slide.read(*plan.read_box(tile), plan.downsample)
    return stain.reinhard_table(rgb, *stain_pair) if stain_pair is not None else rgb
