"""Nucleus layouts read off the real tissue (`SynthesisConfig.layout_source`).

The release places random star polygons (`placement.py`): their positions, sizes, shapes
and the way they touch follow no real tissue. Here each tile is segmented once by the
classical Otsu-H + watershed baseline (no labels; the count's label-free settings, see
`tissue.COUNT_H_UM`) and each of its instances becomes one polygon; a patch takes the
polygons that reach into its canvas instead of placing random ones. The image is then
synthesised *from* those polygons as before, so its labels stay exact where the baseline
erred: two nuclei it merged become one large synthetic nucleus, not a mislabelled pair.

With `layout_source="net"` the instances come from a finished run's exported net instead
(`from_model`): a second round whose synthetic nuclei sit where the first round's net
found real ones. Still no labels, and the patches' labels stay exact; only the layout
inherits that net's errors.
"""

import dataclasses

import cv2
import numpy as np
from scipy import ndimage

MIN_INSTANCE_PX = 8  # smaller instances are specks, not nuclei (the baseline keeps ≥ 80 px)


@dataclasses.dataclass
class Layout:
    """The polygons of one tile, in tile pixel coordinates."""

    polygons: np.ndarray  # (K, V, 2) float32 x, y vertices
    # (K, 4) float32 x0, y0, x1, y1 of each polygon's vertices, kept for the per-patch lookup
    boxes: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self):
        self.boxes = np.concatenate([self.polygons.min(axis=1), self.polygons.max(axis=1)],
                                    axis=1).astype(np.float32)

    def __len__(self) -> int:
        return len(self.polygons)

    def in_canvas(self, x: int, y: int, size: int) -> np.ndarray:
        """(k, V, 2) float32: the polygons that reach into the square at (x, y), shifted to
        its coordinates (they may extend beyond it, as placed nuclei do near a margin)."""
        x0, y0, x1, y1 = self.boxes.T
        hit = (x1 >= x) & (x0 < x + size) & (y1 >= y) & (y0 < y + size)
        return self.polygons[hit] - np.float32([x, y])


def outline(mask: np.ndarray, num_vertices: int) -> np.ndarray:
    """(num_vertices, 2) float32 x, y points evenly spaced along the outer boundary of the
    largest component of `mask`, in its pixel coordinates (as `cv2.fillPoly` draws them)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    points = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float64)
    closed = np.vstack([points, points[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    if arc[-1] == 0:  # one pixel
        return np.repeat(points[:1], num_vertices, axis=0).astype(np.float32)
    at = np.linspace(0.0, arc[-1], num_vertices, endpoint=False)
    return np.stack([np.interp(at, arc, closed[:, 0]),
                     np.interp(at, arc, closed[:, 1])], axis=1).astype(np.float32)


def from_labels(labels: np.ndarray, num_vertices: int) -> Layout:
    """One polygon per instance of `labels` (ids > 0) of at least MIN_INSTANCE_PX pixels."""
    polygons = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        if np.count_nonzero(mask) < MIN_INSTANCE_PX:
            continue
        polygons.append(outline(mask, num_vertices) + np.float32([box[1].start, box[0].start]))
    return Layout(np.stack(polygons) if polygons
                  else np.zeros((0, num_vertices, 2), np.float32))


def net_labeller(model_dir: str):
    """`predict_labels(rgb, mpp)` of the exported net at `model_dir`, loaded at once so that a
    wrong folder fails before any tile is prepared.

    Raises:
      FileNotFoundError: no exported model there.
    """
    from simgan_histo import api  # pylint: disable=import-outside-toplevel  (TensorFlow)
    return api.load(model_dir).predict_labels


def from_model(tiles, labeller, mpp: float, num_vertices: int) -> None:
    """Sets each tile's `layout` to the instances `labeller` (`net_labeller`) finds in it
    (`tile.rgb` is at `mpp` µm/px)."""
    for tile in tiles:
        tile.layout = from_labels(labeller(tile.rgb, mpp), num_vertices)
