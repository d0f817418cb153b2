"""Synthetic slides with known nuclei, and an oracle "model" that needs no training.

The slides are real pyramidal TIFFs (OpenSlide-readable). Nuclei are dark discs on pink
tissue on white glass; the oracle maps pixels to probabilities by darkness and puts a
detection blob at each dark component's centroid, so it is a deterministic function of the
pixels a tile shows (like a real model), and every nucleus's truth is known in µm.
"""

import json

import cv2
import numpy as np
from skimage import measure

from simgan_histo.wsi import model as model_lib
from simgan_histo.wsi import pyramid

TISSUE = (236, 178, 206)
NUCLEUS = (88, 40, 140)


def draw_discs(shape, discs_px, tissue_box=None):
    """RGB image and instance labels with discs (x, y, r) in px (sub-pixel centres)."""
    height, width = shape
    rgb = np.full((height, width, 3), 255, np.uint8)
    if tissue_box is not None:
        x, y, w, h = tissue_box
        rgb[y:y + h, x:x + w] = TISSUE
    labels = np.zeros((height, width), np.int32)
    rows, cols = np.mgrid[0:height, 0:width]
    for index, (x, y, radius) in enumerate(discs_px, start=1):
        # Pixel centres at (c + 0.5, r + 0.5): the disc is exact in the corner frame.
        inside = (cols + 0.5 - x) ** 2 + (rows + 0.5 - y) ** 2 <= radius ** 2
        labels[inside] = index
    rgb[labels > 0] = NUCLEUS
    return rgb, labels


def disc_slide(path, mpp, discs_um, size_um, tissue_um=None, record_mpp=True, **pyramid_args):
    """Writes a slide at `mpp` with discs (x, y, r) in µm; returns (path, labels, discs_px).

    `record_mpp=False` leaves the scale out of the file (a slide with no MPP metadata).
    """
    width, height = (int(round(v / mpp)) for v in size_um)
    discs_px = [(x / mpp, y / mpp, r / mpp) for x, y, r in discs_um]
    box = None if tissue_um is None else tuple(int(round(v / mpp)) for v in tissue_um)
    rgb, labels = draw_discs((height, width), discs_px, box)
    pyramid_args.setdefault("compression", "deflate")
    pyramid.write_pyramid(path, rgb, mpp if record_mpp else None, **pyramid_args)
    return path, labels, discs_px


def oracle_maps(batch):
    """Darkness -> segmentation; a Gaussian blob at each dark component's centroid -> detection."""
    grey = batch.min(axis=-1).astype(np.float32)
    # 0 at the tissue's darkest channel, 1 at the nucleus's: 0.5 halfway, so edges blurred
    # by resampling are cut where the drawn edge was.
    low, high = min(NUCLEUS), min(TISSUE)
    segmentation = np.clip((high - grey) / (high - low), 0.0, 1.0)
    detection = np.zeros_like(segmentation)
    for index in range(len(batch)):
        components = measure.label(segmentation[index] > 0.5)
        for region in measure.regionprops(components):
            row, col = (int(round(v)) for v in region.centroid)
            detection[index, row, col] = 1.0
        blurred = cv2.GaussianBlur(detection[index], (0, 0), 2.0)
        detection[index] = blurred / max(float(blurred.max()), 1e-6)
    return segmentation, detection


def components(segmentation, detection, image=None):  # pylint: disable=unused-argument
    """Instances = connected components of segmentation > 0.5 (no watershed needed)."""
    return measure.label(np.asarray(segmentation) > 0.5).astype(np.int32)


def oracle_model(mpp=0.25, instances=components, **kwargs):
    return model_lib.from_callable(oracle_maps, mpp, instances=instances, name="oracle",
                                   **kwargs)


def load_features(path):
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    return data["features"]


def rasterize_features(features, shape, scale=1.0):
    """Label image of GeoJSON polygons (level-0 corner frame) at level-0 px × `scale`."""
    labels = np.zeros(shape, np.int32)
    for index, feature in enumerate(features, start=1):
        ring = np.asarray(feature["geometry"]["coordinates"][0], np.float64)
        # Corner frame -> pixel index at the target scale, 4 bits of sub-pixel precision.
        points = np.round((ring * scale - 0.5) * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(labels, [points], index, shift=4)
    return labels
