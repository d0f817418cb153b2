"""Parity: the whole-slide path keeps the image path's accuracy on the 14 MoNuSeg test images.

Usage: python benchmarks/wsi_parity.py [--model=runs/<run>/export] [--work=/tmp/wsi_parity]

The 14 test images go into a 4-column mosaic with white gutters, written as OpenSlide-readable
pyramids (Aperio-style) at 0.25 µm/px and as a 2× downsampled copy at 0.5 µm/px, once with
lossless (deflate) tiles — the pass/fail check of the slide path itself — and once with JPEG
Q90 tiles as scanners store them (reported: what lossy storage costs on top).
Each is segmented by `segment.segment_slide` (default tiles: 2048 px, 128 px overlap, so
seams cross images), the GeoJSON is rasterised back onto each image's 0.25-µm frame and scored
against the ground truth. Two references, both the same model on each image whole:
predict.py's path (`simgan_histo.load(...).predict_labels(rgb, mpp=0.25)`, Reinhard with each
image's own statistics) and the same with the slide's once-per-slide statistics
(`parity.direct_labels`), which isolates the slide path from the choice of normalisation
statistics. Pass (lossless pyramids, graded against the same-statistics reference): Dice-avg
and AJI within 0.01 at 0.25 µm/px, within 0.03 for the 0.5 µm/px copy; deltas to predict.py
are reported beside.
With --stain_norm=none (or a model without a Reinhard target) the two references coincide.

Model: --model, else the newest export under runs/, else the training-free stand-in
(`wsi.model.stand_in_model`); the JSON names which. Last stdout line: one JSON object.
"""

import json
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np
from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, ".")  # run from the checkout

from simgan_histo import config as config_lib  # noqa: E402
from simgan_histo import stain  # noqa: E402
from simgan_histo.evaluation import metrics  # noqa: E402
from simgan_histo.wsi import model as model_lib, parity, pyramid, segment  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Export folder; default: newest under runs/, else stand-in.")
flags.DEFINE_string("data", "../shared/datasets/monuseg2018/test", "images/ and labels/.")
flags.DEFINE_string("work", None, "Folder for the pyramids and outputs (default: temporary).")
flags.DEFINE_list("mpps", ["0.25", "0.5"], "Slide copies to build, µm/px.")
flags.DEFINE_list("compressions", ["deflate", "jpeg"], "Pyramid tile compressions to run; "
                  "pass/fail uses the lossless (deflate) ones when present.")
flags.DEFINE_enum("stain_norm", "auto", ["auto", "none"], "For both paths.")
flags.DEFINE_integer("tile_size", 2048, "Slide-path tile side (model px).")
flags.DEFINE_integer("overlap", 128, "Slide-path overlap (model px).")

IMAGE_MPP = 0.25
TOLERANCE = {0.25: 0.01, 0.5: 0.03}
KEYS = ("dice1", "dice2", "dice_avg", "aji", "pq")


def _find_model():
    """(SegmentationModel, direct labeller, description)."""
    path = FLAGS.model
    if path is None:
        exports = sorted(pathlib.Path("runs").glob("**/export/*/assets/inference.json"),
                         key=lambda p: p.stat().st_mtime)
        path = str(exports[-1].parents[2]) if exports else None
    if path is None:
        model = model_lib.stand_in_model(IMAGE_MPP)
        return model, lambda rgb: parity.direct_labels(model, rgb), "stand-in (no export found)"
    from simgan_histo import api, tf_setup  # pylint: disable=import-outside-toplevel
    tf_setup.import_tensorflow()
    stain_norm = None if FLAGS.stain_norm == "auto" else FLAGS.stain_norm
    loaded = api.load(path, stain_norm=stain_norm)
    return (model_lib.from_api(loaded), lambda rgb: loaded.predict_labels(rgb, mpp=IMAGE_MPP),
            f"export {loaded.name}")


def _scores(truths, predictions) -> dict:
    per_image = [metrics.image_metrics(t, p) for t, p in zip(truths, predictions)]
    return {key: float(np.mean([m[key] for m in per_image])) for key in KEYS}


def _slide_run(rgb, boxes, truths, model, mpp, compression, work: pathlib.Path):
    """Scores of the slide path on one pyramid; also the Reinhard pair it used (or None)."""
    factor = IMAGE_MPP / mpp
    if factor != 1:
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    path = pyramid.write_pyramid(work / f"mosaic_{mpp:g}_{compression}.svs", rgb, mpp,
                                 compression=compression, app_mag=round(10 / mpp))
    config = config_lib.WsiConfig(tile_size_px=FLAGS.tile_size, overlap_px=FLAGS.overlap,
                                  stain_norm=FLAGS.stain_norm)
    started = time.perf_counter()
    report = segment.segment_slide(path, model, work / "out", config)
    seconds = time.perf_counter() - started
    outlines = parity.Outlines.from_geojson(work / "out" / path.stem / f"{path.stem}.geojson")
    found = [outlines.rasterize(tuple(v * factor for v in box), scale=1 / factor)
             for box in boxes]
    stain_pair = None
    if report["stain"] is not None:
        stain_pair = (stain.stats_from_json(report["stain"]["slide"]),
                      stain.stats_from_json(report["stain"]["target"]))
    run = dict(_scores(truths, found), seconds=seconds, nuclei=report["nuclei"],
               tiles=report["tiles"]["processed"], counts=report["counts"],
               mp_per_s=report["mp_per_s"])
    return run, stain_pair


def _grade(run, mpp, same_stain, predict_reference) -> dict:
    """Deltas to the same-normalisation reference (graded) and to predict.py (reported)."""
    run["reference_same_stain"] = {key: same_stain[key] for key in KEYS}
    for key in ("dice_avg", "aji"):
        run[f"delta_{key}"] = run[key] - same_stain[key]
        run[f"delta_{key}_vs_predict"] = run[key] - predict_reference[key]
    run["within_tolerance"] = all(abs(run[f"delta_{k}"]) <= TOLERANCE.get(mpp, 0.03)
                                  for k in ("dice_avg", "aji"))
    return run


def _load(data: pathlib.Path):
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    images = [cv2.cvtColor(cv2.imread(str(data / "images" / f"{n}.png")), cv2.COLOR_BGR2RGB)
              for n in names]
    truths = [cv2.imread(str(data / "labels" / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in names]
    return images, truths


def main(argv):
    del argv
    images, truths = _load(pathlib.Path(FLAGS.data))
    model, direct, description = _find_model()
    started = time.perf_counter()
    reference = dict(_scores(truths, [direct(image) for image in images]),
                     seconds=time.perf_counter() - started)
    work = pathlib.Path(FLAGS.work or tempfile.mkdtemp(prefix="wsi_parity_"))
    work.mkdir(parents=True, exist_ok=True)
    rgb, boxes = parity.mosaic(images, gutter_px=256, columns=4)
    result = {"model": description, "images": len(images), "reference_predict": reference,
              "tile_size": FLAGS.tile_size, "overlap": FLAGS.overlap,
              "stain_norm": FLAGS.stain_norm}
    graded = "deflate" if "deflate" in FLAGS.compressions else FLAGS.compressions[0]
    passed = True
    for compression in FLAGS.compressions:
        for mpp in (float(v) for v in FLAGS.mpps):
            run, stain_pair = _slide_run(rgb, boxes, truths, model, mpp, compression, work)
            same_stain = reference if stain_pair is None else _scores(
                truths, [parity.direct_labels(model, image, stain_pair) for image in images])
            run = _grade(run, mpp, same_stain, reference)
            if compression == graded:
                passed &= run["within_tolerance"]
            result[f"slide_{mpp:g}_{compression}"] = run
            logging.info("%g µm/px %s: %s", mpp, compression, json.dumps(run))
    result["pass"] = passed
    result["graded_on"] = graded
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
