"""Overlapping tiles and seams: which tile keeps which nucleus (STYLE §7).

A region of `shape` = (height, width) px (at processing resolution) is cut into tiles. Each
tile has
- a **write window** (its core): the cores partition the region, edge to edge, no overlap;
- a **read window**: the core grown by `margin = context + overlap // 2` on every side, so
  every read window has the same shape (the model sees equal shapes, which batches) and
  neighbouring read windows overlap by `overlap + 2 · context` px.

By default read windows are `tile_size` × `tile_size` and the last row and column of tiles
hang over the region's edge: a 4096² region in 2048-px tiles (128 overlap) makes 3 × 3 tiles
of 2048², 2.25× the region's pixels through the model. `balanced=True` keeps the number of
rows and columns but shares the region evenly between them (each side shrunk to the
smallest multiple of `stride` that covers it): 3 × 3 tiles of 1496², 1.2×; 8192² goes from
1.56× to 1.16× and 16384² from 1.27× to 1.15×.

**Assumption: every nucleus is smaller than the overlap** — more exactly, no nucleus pixel
lies further than `overlap // 2` from the nucleus centroid (about: diameter < overlap).
`context` px at each read-window edge are seen by the model but trusted for nothing (padding
and receptive-field effects). Then a nucleus whose centroid lies in a tile's core lies wholly
in the trusted part of that tile's read window, and

    each nucleus is kept by exactly the tile that owns its centroid (`is_responsible`),

so none is cut and none is kept twice. Ownership is half-open ([x0, x1) × [y0, y1)) and the
cores along the region's border own everything beyond it, so every point has one owner.
"""

import dataclasses
import math
from typing import List, Tuple

import numpy as np

Box = Tuple[int, int, int, int]  # (x, y, width, height) in processing px


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: `read` (what the model sees) and `write` (the core it answers for)."""

    row: int
    col: int
    read: Box
    write: Box
    first_row: bool = False
    last_row: bool = False
    first_col: bool = False
    last_col: bool = False

    @property
    def index(self) -> Tuple[int, int]:
        return self.row, self.col

    def is_responsible(self, x, y):
        """True where (x, y) — a nucleus centroid, region px, corner frame — lies in this core.

        Half-open on interior edges; unbounded beyond the region's border. Scalars give a
        bool, arrays an elementwise bool array.
        """
        write_x, write_y, width, height = self.write
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        inside = ((self.first_col | (x >= write_x)) & (self.last_col | (x < write_x + width))
                  & (self.first_row | (y >= write_y)) & (self.last_row | (y < write_y + height)))
        return bool(inside) if inside.ndim == 0 else inside

    def to_read_frame(self, x: float, y: float) -> Tuple[float, float]:
        """Region coordinates -> coordinates inside the read window."""
        return x - self.read[0], y - self.read[1]


def margin_px(overlap: int, context: int) -> int:
    """Read-window margin around each core: context plus half the overlap."""
    return context + overlap // 2


def _balanced_core(length: int, count: int, margin: int, stride: int, tile_size: int) -> int:
    """The core side sharing `length` px between `count` tiles, read side a stride multiple."""
    core = math.ceil(length / count)
    read = min(math.ceil((core + 2 * margin) / stride) * stride, tile_size)
    return read - 2 * margin


def cover(shape: Tuple[int, int], tile_size: int, overlap: int, context: int = 0, *,
          balanced: bool = False, stride: int = 1) -> List[Tile]:
    """Tiles covering a (height, width) region, row-major.

    Args:
      shape: (height, width) of the region, px.
      tile_size: the largest read-window side, px (the model's input side).
      overlap: px two neighbouring read windows share beyond their context; must exceed the
        largest nucleus (see the module docstring).
      context: px at each read-window edge the model sees but whose output is not trusted.
      balanced: share the region evenly between as many tiles as `tile_size` needs, with
        smaller read windows (module docstring); False: every read window is tile_size².
      stride: with `balanced`, read-window sides are multiples of it (the model's stride).

    Returns:
      Tiles in row-major order; their cores partition the region; all read windows have
      one shape.

    Raises:
      ValueError: a core would be empty (tile_size <= 2 · margin) or a size is negative.
    """
    height, width = shape
    if height <= 0 or width <= 0:
        raise ValueError(f"shape={shape}: expected positive height and width")
    if overlap < 0 or context < 0:
        raise ValueError(f"overlap={overlap}, context={context}: expected >= 0")
    margin = margin_px(overlap, context)
    core = tile_size - 2 * margin
    if core <= 0:
        raise ValueError(f"tile_size={tile_size}: must exceed 2 × (context + overlap // 2) = "
                         f"{2 * margin}")
    if stride < 1:
        raise ValueError(f"stride={stride}: expected >= 1")
    rows, cols = math.ceil(height / core), math.ceil(width / core)
    core_h = _balanced_core(height, rows, margin, stride, tile_size) if balanced else core
    core_w = _balanced_core(width, cols, margin, stride, tile_size) if balanced else core
    tiles = []
    for row in range(rows):
        for col in range(cols):
            x, y = col * core_w, row * core_h
            write = (x, y, min(core_w, width - x), min(core_h, height - y))
            read = (x - margin, y - margin, core_w + 2 * margin, core_h + 2 * margin)
            tiles.append(Tile(row, col, read, write, first_row=row == 0,
                              last_row=row == rows - 1, first_col=col == 0,
                              last_col=col == cols - 1))
    return tiles
