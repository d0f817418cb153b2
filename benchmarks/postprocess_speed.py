"""Speed of the post-processing: marker watershed, polygons, morphometry on one MoNuSeg image.

Usage: python benchmarks/postprocess_speed.py [--image=TCGA-44-2665-01B-06-BS6] [--rounds=5]
       [--model=runs/<run>/export]

Maps: with --model, the export's predicted maps (`simgan_histo.load(...).predict_maps`).
Without one, a STAND-IN: the ground-truth labels made into maps — segmentation = the nuclear
mask blurred (σ 1.5 px) plus Gaussian noise (sd 0.05), detection = 3-px discs at the
centroids blurred (σ 1.5 px) plus noise — so the watershed sees realistic shapes, counts
and touching nuclei. The JSON says which maps were used.

Each round times the three stages once (wall and process CPU seconds) and the same-run
reference, a numpy fp32 1024² matmul (GFLOP/s); rounds are interleaved and medians reported.
"core_seconds_per_mp" is process CPU time per megapixel (≈ wall on an idle core; on a loaded
machine wall time also counts the waits, so compare "mp_per_core_second"). Last stdout
line: one JSON object.
"""

import json
import os
import statistics
import sys
import time

import cv2
import numpy as np
from absl import app
from absl import flags
from scipy import ndimage

sys.path.insert(0, ".")  # run from the checkout

from simgan_histo.evaluation import metrics  # noqa: E402
from simgan_histo.postprocess import morphometry, polygons, watershed  # noqa: E402
import same_run  # noqa: E402  (benchmarks/ is first on the path)

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/datasets/monuseg2018/test", "images/ and labels/.")
flags.DEFINE_string("image", "TCGA-44-2665-01B-06-BS6", "Image id (the densest test image).")
flags.DEFINE_string("model", None, "Export to predict the maps with; default: the stand-in.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (medians reported).")


def stand_in_maps(labels: np.ndarray, seed: int = 0):
    """Segmentation and detection maps made from ground-truth labels (see module doc)."""
    rng = np.random.default_rng(seed)
    seg = ndimage.gaussian_filter((labels > 0).astype(np.float32), 1.5)
    ids = np.unique(labels)[1:]
    centres = np.round(ndimage.center_of_mass(np.ones_like(labels), labels, ids)).astype(int)
    det = np.zeros(labels.shape, np.float32)
    det[centres[:, 0], centres[:, 1]] = 1.0
    det = ndimage.gaussian_filter(ndimage.binary_dilation(det, iterations=3).astype(np.float32),
                                  1.5)
    noisy = [np.clip(m + rng.normal(0, 0.05, m.shape), 0, 1).astype(np.float32)
             for m in (seg, det)]
    return noisy[0], noisy[1]


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def one_round(rgb, seg, det, thresholds):
    """(labels, {stage: (wall s, cpu s)}) for watershed -> polygons -> morphometry."""
    labels, *ws = timed(watershed.instances_from_maps, seg, det, thresholds)
    outlines, *poly = timed(polygons.instance_polygons, labels)
    _, *morph = timed(morphometry.measure_nuclei, labels, rgb, seg, mpp=0.25,
                      polygons=outlines)
    return labels, {"watershed": ws, "polygons": poly, "morphometry": morph}


def load_maps(rgb, truth):
    if FLAGS.model is None:
        seg, det = stand_in_maps(truth)
        return seg, det, watershed.Thresholds(), "stand-in: ground truth blurred + noise"
    import simgan_histo  # pylint: disable=import-outside-toplevel
    model = simgan_histo.load(FLAGS.model)
    seg, det = model.predict_maps(rgb, mpp=0.25)
    return seg, det, model.settings.thresholds, f"model {model.name}"


def main(argv):
    del argv
    rgb = cv2.imread(os.path.join(FLAGS.data, "images", FLAGS.image + ".png"))[..., ::-1].copy()
    truth = cv2.imread(os.path.join(FLAGS.data, "labels", FLAGS.image + ".png"),
                       cv2.IMREAD_UNCHANGED)
    seg, det, thresholds, source = load_maps(rgb, truth)
    megapixels = truth.size / 1e6
    stages, references = {}, []
    for _ in range(FLAGS.rounds):
        references.append(same_run.numpy_matmul_gflops(1024, repeats=5))
        labels, times = one_round(rgb, seg, det, thresholds)
        for stage, (wall, cpu) in times.items():
            stages.setdefault(stage, []).append((wall, cpu))
    walls = [sum(t[i][0] for t in stages.values()) for i in range(FLAGS.rounds)]
    scores = metrics.image_metrics(truth, labels)
    result = {
        "benchmark": "postprocess_speed", "image": FLAGS.image, "maps": source,
        "megapixels": megapixels, "nuclei": int(labels.max()), "nuclei_true": scores["n_true"],
        "mp_per_s": megapixels / statistics.median(walls),
        "core_seconds_per_mp": {stage: statistics.median(c for _, c in v) / megapixels
                                for stage, v in stages.items()},
        "wall_seconds": {stage: statistics.median(w for w, _ in v) for stage, v in stages.items()},
        "aji_vs_truth": scores["aji"], "dice_avg_vs_truth": scores["dice_avg"],
        "reference_numpy_fp32_matmul_gflops": statistics.median(references),
        "rounds": FLAGS.rounds, "load_average_1min": os.getloadavg()[0],
    }
    result["core_seconds_per_mp"]["total"] = sum(result["core_seconds_per_mp"].values())
    # On a shared machine wall time includes waiting for a core; CPU time does not.
    result["mp_per_core_second"] = 1.0 / result["core_seconds_per_mp"]["total"]
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
