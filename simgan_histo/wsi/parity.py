"""Parity of the slide path with the image path: mosaics of images, GeoJSON back to labels.

The check (issue 7): put images in a mosaic with white gutters, write it as an
OpenSlide-readable pyramid (at the images' µm/px and at coarser copies), segment it with
`segment.segment_slide`, rasterise the GeoJSON back onto each image's frame and score it
against the ground truth, next to the same model run on each image directly. A slide path
that misregisters, cuts or duplicates nuclei, or resamples wrongly, loses accuracy here.
"""

import dataclasses
import json
import math
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from simgan_histo.wsi import model as model_lib

Box = Tuple[int, int, int, int]  # (x, y, width, height), level-0 px


def mosaic(images: Sequence[np.ndarray], gutter_px: int, columns: int) -> Tuple[np.ndarray,
                                                                               List[Box]]:
    """Images on white, row-major in `columns`, `gutter_px` apart and from the border.

    Returns:
      (rgb, boxes): the mosaic and each image's box in it.
    """
    rows = math.ceil(len(images) / columns)
    cell_h = max(image.shape[0] for image in images)
    cell_w = max(image.shape[1] for image in images)
    height = rows * cell_h + (rows + 1) * gutter_px
    width = columns * cell_w + (columns + 1) * gutter_px
    rgb = np.full((height, width, 3), 255, np.uint8)
    boxes = []
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        x = gutter_px + col * (cell_w + gutter_px)
        y = gutter_px + row * (cell_h + gutter_px)
        rgb[y:y + image.shape[0], x:x + image.shape[1]] = image
        boxes.append((x, y, image.shape[1], image.shape[0]))
    return rgb, boxes


@dataclasses.dataclass
class Outlines:
    """GeoJSON polygons (level-0 corner frame) with their bounding boxes, for rasterising."""

    rings: List[np.ndarray]
    bounds: np.ndarray  # (N, 4) min x, min y, max x, max y

    @classmethod
    def from_geojson(cls, path) -> "Outlines":
        with open(path, encoding="utf-8") as f:
            features = json.load(f)["features"]
        rings = [np.asarray(f["geometry"]["coordinates"][0], np.float64) for f in features]
        bounds = np.array([[r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()]
                           for r in rings]).reshape(-1, 4)
        return cls(rings, bounds)

    def rasterize(self, box: Box, scale: float = 1.0) -> np.ndarray:
        """Instance labels of the level-0 `box` at `scale` × level-0 resolution.

        Each polygon is filled (boundary pixel centres included) with its own id, 4 bits of
        sub-pixel precision; polygons crossing the box edge are clipped, not dropped.
        """
        x, y, width, height = box
        shape = (int(round(height * scale)), int(round(width * scale)))
        labels = np.zeros(shape, np.int32)
        hits = np.nonzero((self.bounds[:, 2] >= x) & (self.bounds[:, 0] <= x + width)
                          & (self.bounds[:, 3] >= y) & (self.bounds[:, 1] <= y + height))[0]
        for label, index in enumerate(hits, start=1):
            # Corner frame at `scale`, then pixel index (−0.5).
            points = ((self.rings[index] - (x, y)) * scale - 0.5) * 16
            cv2.fillPoly(labels, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], label,
                         shift=4)
        return labels


def direct_labels(model: model_lib.SegmentationModel, rgb: np.ndarray,
                  stain_pair=None) -> np.ndarray:
    """The model on a whole image at its own resolution (reflect-padded to the stride)."""
    from simgan_histo import stain  # pylint: disable=import-outside-toplevel

    if stain_pair is not None:
        rgb = stain.reinhard(rgb, *stain_pair)
    height, width = rgb.shape[:2]
    padded = np.pad(rgb, ((0, -height % model.stride), (0, -width % model.stride), (0, 0)),
                    mode="symmetric")
    segmentation, detection = model.maps(padded[None])
    return np.asarray(model.instances(segmentation[0, :height, :width],
                                      detection[0, :height, :width], image=rgb))
