"""QC images: a thumbnail with the tissue mask and every nucleus, and full-resolution overlays.

The overlay boxes are chosen before segmentation starts (from the tissue mask: the densest
tissue, spread over the slide by farthest-point sampling), so the writer only keeps the
outlines that fall inside them: memory stays bounded whatever the slide size.
"""

import os
import pathlib
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from scipy import ndimage

from simgan_histo.wsi import writers

MASK_COLOUR = (0, 200, 0)  # RGB: tissue outline
NUCLEUS_COLOUR = (255, 230, 0)  # RGB: nuclei (yellow reads on pink and on purple)
OVERLAY_MARGIN_PX = 64  # outlines of nuclei centred this close outside a box are drawn too
THUMBNAIL_PX = 2048  # longer side of the QC thumbnail (never above level-0 resolution)


def choose_overlay_boxes(tissue, slide_dimensions: Tuple[int, int], count: int,
                         side_px: int) -> List[Tuple[int, int, int, int]]:
    """Up to `count` level-0 boxes (x, y, side, side) on dense tissue, spread apart."""
    mask = tissue.mask
    if count == 0 or not mask.any():
        return []
    window = max(1, int(round(side_px / tissue.downsample[0])))
    density = ndimage.uniform_filter(mask.astype(np.float32), size=window, mode="constant")
    density[~mask] = 0
    rows, cols = np.nonzero(density >= 0.9 * density.max())
    points = np.stack([cols, rows], axis=1).astype(np.float64)
    chosen = [int(np.argmin(((points - points.mean(0)) ** 2).sum(1)))]
    distance = ((points - points[chosen[0]]) ** 2).sum(1)
    while len(chosen) < min(count, len(points)) and distance.max() > 0:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, ((points - points[chosen[-1]]) ** 2).sum(1))
    width, height = slide_dimensions
    boxes = []
    for index in chosen:
        centre_x = (points[index, 0] + 0.5) * tissue.downsample[0]
        centre_y = (points[index, 1] + 0.5) * tissue.downsample[1]
        x = int(np.clip(centre_x - side_px / 2, 0, max(width - side_px, 0)))
        y = int(np.clip(centre_y - side_px / 2, 0, max(height - side_px, 0)))
        boxes.append((x, y, min(side_px, width), min(side_px, height)))
    return boxes


def thumbnail_downsample(slide_dimensions: Tuple[int, int]) -> float:
    """Level-0 px per QC-thumbnail px: the longer side becomes THUMBNAIL_PX (at most 1:1)."""
    return max(1.0, max(slide_dimensions) / THUMBNAIL_PX)


def _write_png(path: pathlib.Path, rgb: np.ndarray) -> pathlib.Path:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    tmp = writers.temporary_path(path)
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
    return path


class QcWriter:
    """Draws nuclei onto the thumbnail as they stream by; overlays are drawn on close()."""

    def __init__(self, folder, stem: str, thumb: np.ndarray, tissue,
                 slide_dimensions: Tuple[int, int], boxes: Sequence[Tuple[int, int, int, int]]):
        self.folder, self.stem = pathlib.Path(folder), stem
        self.thumb = thumb.copy()
        self.scale = (slide_dimensions[0] / thumb.shape[1], slide_dimensions[1] / thumb.shape[0])
        self.tissue = tissue
        self.boxes = list(boxes)
        self.outlines = [[] for _ in self.boxes]
        self.count = 0

    def write(self, table, core_level0=()) -> None:
        if not len(table):
            return
        cols = np.clip((table.columns["centroid_x"] / self.scale[0]).astype(int), 0,
                       self.thumb.shape[1] - 1)
        rows = np.clip((table.columns["centroid_y"] / self.scale[1]).astype(int), 0,
                       self.thumb.shape[0] - 1)
        # Dots of a few px on small thumbnails (visible), single pixels on large slides.
        radius = int(np.clip(round(3.0 / self.scale[0]), 0, 3))
        if radius == 0:
            self.thumb[rows, cols] = NUCLEUS_COLOUR
        for col, row in zip(cols, rows) if radius else ():
            cv2.circle(self.thumb, (int(col), int(row)), radius, NUCLEUS_COLOUR, -1)
        for box, kept in zip(self.boxes, self.outlines):
            x, y, width, height = box
            inside = ((table.columns["centroid_x"] > x - OVERLAY_MARGIN_PX)
                      & (table.columns["centroid_x"] < x + width + OVERLAY_MARGIN_PX)
                      & (table.columns["centroid_y"] > y - OVERLAY_MARGIN_PX)
                      & (table.columns["centroid_y"] < y + height + OVERLAY_MARGIN_PX))
            kept.extend(table.polygons[i] for i in np.nonzero(inside)[0])
        self.count += len(table)

    def _tissue_outline(self) -> np.ndarray:
        mask = cv2.resize(self.tissue.mask.astype(np.uint8), self.thumb.shape[1::-1],
                          interpolation=cv2.INTER_NEAREST)
        return mask.astype(bool) & ~ndimage.binary_erosion(mask.astype(bool))

    def close(self, slide) -> List[pathlib.Path]:
        """Writes `<stem>_qc_thumbnail.png` and `<stem>_qc_overlay_<k>.png`; returns paths."""
        thumb = self.thumb
        thumb[self._tissue_outline()] = MASK_COLOUR
        paths = [_write_png(self.folder / f"{self.stem}_qc_thumbnail.png", thumb)]
        for index, (box, outlines) in enumerate(zip(self.boxes, self.outlines)):
            x, y, width, height = box
            image = np.ascontiguousarray(slide.read_level0(x, y, width, height))
            # Corner-frame vertex -> pixel index (−0.5), relative to the box; 2 bits subpixel.
            polylines = [np.round((ring - (x + 0.5, y + 0.5)) * 4).astype(np.int32)
                         .reshape(-1, 1, 2) for ring in outlines]
            cv2.polylines(image, polylines, True, NUCLEUS_COLOUR, 1, cv2.LINE_AA, shift=2)
            paths.append(_write_png(self.folder / f"{self.stem}_qc_overlay_{index}_{x}_{y}.png",
                                    image))
        return paths

    def abort(self) -> None:
        self.outlines = []
