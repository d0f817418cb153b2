"""Does the refiner do its job? Realism and label survival after a timed GAN run (issue 6).

Usage: python benchmarks/refiner_realism.py --workdir=runs/realism [--minutes=20]
       [--preset=cpu_small] [--tissue=../shared/datasets/monuseg2018/train/images --mpp=0.25]
       [--triples=256] [--evaluate_only]

1. Trains (or resumes) `train_refiner` on the tissue for `--minutes` of wall time (the
   checkpoint, buffer and exports land in --workdir); skipped with --evaluate_only.
2. Draws `--triples` HELD-OUT synthetic patches (a synthesis stream the trainer never
   uses: seed + 10007), refines them with the exported refiner SavedModel, and draws two
   independent sets of real crops, each crop from the tile its triple came from.
3. `evaluation/realism.py`: (a) SWD of 7×7 LAB neighbourhoods to the real crops, initial
   vs refined (target: refined ≥ 10 % lower), with the real-vs-real floor for scale;
   (b) Dice(mask, Otsu-on-H) of refined ≥ 0.95 × that of initial; (c) mean |Δ|.
Writes `<workdir>/realism_preview.png` (rows: initial | refined | real crop) and
`<workdir>/realism.json`. Last stdout line: one JSON object.
"""

import json
import os
import pathlib
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, ".")  # run from the checkout

from simgan_histo import config as config_lib  # noqa: E402
from simgan_histo import tf_setup  # noqa: E402
import same_run  # noqa: E402  (benchmarks/ is first on the path)

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run folder (trained here unless --evaluate_only).")
flags.DEFINE_string("preset", "cpu_small", "Preset of the run.")
flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS), "Training precision.")
flags.DEFINE_string("tissue", "../shared/datasets/monuseg2018/train/images", "Real tissue.")
flags.DEFINE_float("mpp", 0.25, "µm/px of the tissue files.")
flags.DEFINE_integer("max_tiles", None, "Tissue tiles to prepare (default: all).")
flags.DEFINE_float("minutes", 20.0, "Wall-time budget of the training run.")
flags.DEFINE_integer("triples", 256, "Held-out (initial, refined, real) triples.")
flags.DEFINE_bool("evaluate_only", False, "Evaluate the newest export without training.")

HELD_OUT_SEED_OFFSET = 10007  # the trainer draws from stream `seed` only
TARGETS = {"swd_reduction": 0.10, "dice_ratio": 0.95}


def refine_with_export(export_root: pathlib.Path, images, references, batch: int = 32):
    """uint8 refined patches from the newest SavedModel version under `export_root`."""
    tf = tf_setup.import_tensorflow()
    from simgan_histo.training import gan_export  # pylint: disable=import-outside-toplevel
    version = max((p for p in export_root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    out = []
    for start in range(0, len(images), batch):
        refined = serve(image=tf.constant(images[start:start + batch], tf.float32),
                        reference=tf.constant(references[start:start + batch], tf.float32))
        out.append(gan_export.refined_to_uint8(refined))
    return np.concatenate(out), str(version)


def write_preview(path: pathlib.Path, initial, refined, real, rows: int = 6) -> None:
    import cv2
    grid = np.concatenate([np.concatenate([initial[i], refined[i], real[i]], axis=1)
                           for i in range(min(rows, len(initial)))], axis=0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_lib.get_preset(FLAGS.preset).replace(runtime={"precision": FLAGS.precision})
    tf_setup.configure(config.runtime)
    from simgan_histo import synthesis
    from simgan_histo.evaluation import realism
    from simgan_histo.training import refiner_run

    workdir = pathlib.Path(FLAGS.workdir)
    source = synthesis.TissueSource.from_paths(FLAGS.tissue, config.synthesis, mpp=FLAGS.mpp,
                                               max_tiles=FLAGS.max_tiles)
    rates = [same_run.tf_matmul_gflops(tf_setup.import_tensorflow())]
    if not FLAGS.evaluate_only:
        refiner_run.train_refiner(config, workdir, source, max_seconds=60 * FLAGS.minutes)
        rates.append(same_run.tf_matmul_gflops(tf_setup.import_tensorflow()))
    training = json.loads((workdir / "refiner_summary.json").read_text())
    seed = config.runtime.seed + HELD_OUT_SEED_OFFSET
    triples = synthesis.make_batch(source, seed, range(FLAGS.triples))
    refined, export = refine_with_export(workdir / "export" / "refiner", triples["image"],
                                         triples["reference"])
    size = config.synthesis.patch_size
    real = realism.real_crops(source.tiles, triples["source"], size,
                              np.random.default_rng([seed, 1]))
    real_again = realism.real_crops(source.tiles, triples["source"], size,
                                    np.random.default_rng([seed, 2]))
    result = realism.evaluate(triples["image"], refined, triples["mask"], real, real_again)
    logging.info("mean |Δ| of the refiner on held-out patches: %.2f grey levels",
                 result["mean_abs_delta"])
    write_preview(workdir / "realism_preview.png", triples["image"], refined, real)
    report = {"benchmark": "refiner_realism", "preset": FLAGS.preset,
              "precision": FLAGS.precision, "triples": FLAGS.triples,
              "tissue_tiles": source.num_tiles, "export": export,
              "training": {key: training.get(key) for key in
                           ("iterations", "total_iterations", "phase", "seconds", "stopped")},
              "load_average_1min": os.getloadavg()[0],
              "matmul_fp32_gflops_before_after": [round(r, 1) for r in rates], **result,
              "meets": {"swd_reduction": result["swd_reduction"] >= TARGETS["swd_reduction"],
                        "dice_ratio": result["dice_ratio"] >= TARGETS["dice_ratio"]}}
    (workdir / "realism.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
