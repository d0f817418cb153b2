"""A small parity check: the slide path scores like the image path on real H&E (MoNuSeg test).

Two 400² crops in a mosaic, written as pyramids at 0.25 and 0.5 µm/px, segmented by
`segment_slide` with tiles much smaller than the crops (so seams cross nuclei), the GeoJSON
rasterised back and scored against the ground truth next to the same model run on each crop
whole. The model is the training-free stand-in (`model.stand_in_model`): local, so any
difference comes from the slide path, which is what this checks.
"""

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.evaluation import metrics
from simgan_histo.wsi import model as model_lib, parity, pyramid, segment

CROPS = [("TCGA-44-2665-01B-06-BS6", 300, 200), ("TCGA-69-7764-01A-01-TS1", 100, 500)]


def _scores(truths, predictions):
    per_image = [metrics.image_metrics(t, p) for t, p in zip(truths, predictions)]
    return {key: float(np.mean([m[key] for m in per_image])) for key in ("dice_avg", "aji")}


@pytest.mark.parametrize("mpp, tolerance", [(0.25, 0.01), (0.5, 0.03)])
def test_slide_path_keeps_the_accuracy(monuseg, tmp_path, mpp, tolerance):
    images, truths = [], []
    for name, x, y in CROPS:
        rgb = cv2.cvtColor(cv2.imread(str(monuseg / "test" / "images" / f"{name}.png")),
                           cv2.COLOR_BGR2RGB)
        labels = cv2.imread(str(monuseg / "test" / "labels" / f"{name}.png"),
                            cv2.IMREAD_UNCHANGED)
        images.append(rgb[y:y + 400, x:x + 400])
        truths.append(labels[y:y + 400, x:x + 400])
    model = model_lib.stand_in_model(0.25)
    direct = _scores(truths, [parity.direct_labels(model, image) for image in images])

    rgb, boxes = parity.mosaic(images, gutter_px=64, columns=2)
    factor = 0.25 / mpp  # level-0 px of this copy per 0.25-µm px
    if factor != 1:
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    path = pyramid.write_pyramid(tmp_path / "mosaic.tif", rgb, mpp, compression="deflate")
    config = config_lib.WsiConfig(tile_size_px=256, overlap_px=96, stain_norm="none")
    report = segment.segment_slide(path, model, tmp_path / "out", config, progress=False)
    assert report["tiles"]["processed"] >= 12  # seams cross both crops
    outlines = parity.Outlines.from_geojson(tmp_path / "out" / "mosaic" / "mosaic.geojson")
    found = [outlines.rasterize(tuple(v * factor for v in box), scale=1 / factor)
             for box in boxes]
    slide = _scores(truths, found)
    assert direct["aji"] > 0.3  # the stand-in finds nuclei (a meaningful comparison)
    for key in ("dice_avg", "aji"):
        assert abs(slide[key] - direct[key]) <= tolerance, (key, slide, direct)
