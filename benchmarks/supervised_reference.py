"""Supervised reference row: the U-Net trained on MoNuSeg TRAIN labels, scored on MoNuSeg TEST
(`--protocol=kumar`: Kumar-2017's train labels, scored on its 14 test images).

"Type-specific, supervised" in the paper's terms. 26 of the 30 train images train the net;
4 held-out train images (from Kumar-2017's train list) select the stopping point and the
watershed thresholds — never the test images. The export is then scored on the 14 test
images through the public API (`simgan_histo.load(export).predict_labels`, the code path of
`predict.py --model=<export>` with no other flag). The run resumes from its checkpoints if
restarted. Last stdout line: one JSON object.

Usage: nice -n 5 python benchmarks/supervised_reference.py --workdir=runs/supervised \
    --precision=float32 --steps=6000
(`--eval_only` re-scores the newest export; `--steps` lower than the run's step stops it
there: the selection is made among the evaluations so far, then exported.)
"""

import json
import pathlib
import resource
import sys
import time

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from simgan_histo import config as config_lib  # noqa: E402 pylint: disable=wrong-import-position
from simgan_histo.training import task_data  # noqa: E402 pylint: disable=wrong-import-position

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "monuseg2018"
WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (resumed if it holds checkpoints).")
DATA_DIR = flags.DEFINE_string("data", str(DATA), "MoNuSeg 2018 folder (train/, test/).")
PRESET = flags.DEFINE_string("preset", "cpu_small", "Preset whose task net is trained.")
PRECISION = flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS), "Precision.")
STEPS = flags.DEFINE_integer("steps", 6000, "Training steps (the budget; not wall time).")
EVAL_EVERY = flags.DEFINE_integer("eval_every", 500, "Held-out evaluation period, steps.")
HOLDOUT = flags.DEFINE_integer("holdout", 4, "Train images held out for selection.")
SEED = flags.DEFINE_integer("seed", 0, "Seed.")
EVAL_ONLY = flags.DEFINE_bool("eval_only", False, "Score the newest export of --workdir only.")
PROTOCOL = flags.DEFINE_enum(
    "protocol", "monuseg", ["monuseg", "kumar"], "monuseg: the 30 train images -> the 14 "
    "MoNuSeg test images; kumar: Kumar-2017's 16 train images -> its 14 test images (issue 9).")
BF16_INFERENCE = flags.DEFINE_bool(
    "bf16_inference", True, "Also score a mixed_bfloat16 copy of the trained weights "
    "(exported to <workdir>/export_bf16): the accuracy cost of bf16 at inference.")


def split_folders(data: pathlib.Path, workdir: pathlib.Path, holdout: int, seed: int,
                  train_ids):
    """Symlinked train / held-out folders of `train_ids`; held-out ids drawn from
    Kumar-2017's train list (a subset of both protocols' train images)."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    manifest = json.loads((data / "manifest.json").read_text())
    kumar_train = sorted(manifest["kumar2017_split"]["train"])
    held = {str(name) for name in
            np.random.default_rng(seed).choice(kumar_train, holdout, replace=False)}
    folders = {"train": workdir / "split" / "train", "holdout": workdir / "split" / "holdout"}
    for image in sorted((data / "train" / "images").glob("*.png")):
        if image.stem not in train_ids:
            continue
        part = "holdout" if image.stem in held else "train"
        for kind in ("images", "labels"):
            task_data.link(data / "train" / kind / image.name, folders[part] / kind / image.name)
    return folders, sorted(held)


def score_test(export_dir, tests, stain_norm=None) -> dict:
    """DESIGN §3 metrics JSON of the export on [(image, labels)], through the public API."""
    import simgan_histo  # pylint: disable=import-outside-toplevel
    from simgan_histo.evaluation import metrics, predict_lib  # pylint: disable=import-outside-toplevel

    model = simgan_histo.load(export_dir, stain_norm=stain_norm)
    per_image = {}
    for image_path, label_path in tests:
        rgb = predict_lib.read_rgb(image_path)
        truth = predict_lib.read_labels(label_path)
        per_image[image_path.stem] = metrics.image_metrics(truth, model.predict_labels(rgb))
    return metrics.summarize(per_image)


def bf16_export(export_dir, workdir: pathlib.Path) -> pathlib.Path:
    """The trained weights re-exported to compute in mixed_bfloat16 (same inference.json)."""
    import keras  # pylint: disable=import-outside-toplevel
    from simgan_histo.training import export  # pylint: disable=import-outside-toplevel

    settings = export.load_inference_json(export_dir)
    version = export.resolve_export_dir(export_dir)
    config = config_lib.load(version / "assets" / "config.json")
    model = keras.models.load_model(version / export.KERAS_FILE)
    copy = export.with_precision(model, config.task, "mixed_bfloat16")
    settings = {**settings, "precision": "mixed_bfloat16"}
    return export.export_task_model(copy, workdir / "export_bf16", config, settings)


def main(argv):
    del argv
    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel
    config = config_lib.get_preset(PRESET.value)
    config = config.replace(
        task=dict(train_steps=STEPS.value, eval_every=EVAL_EVERY.value,
                  checkpoint_every=min(250, EVAL_EVERY.value)),
        runtime=dict(precision=PRECISION.value, seed=SEED.value))
    tf_setup.configure(config.runtime)
    from simgan_histo.training import task_trainer  # pylint: disable=import-outside-toplevel

    workdir, data = pathlib.Path(WORKDIR.value), pathlib.Path(DATA_DIR.value)
    from simgan_histo.evaluation import protocols  # pylint: disable=import-outside-toplevel
    train, tests = protocols.protocol_files(data, PROTOCOL.value)
    train_ids = {path.stem for path in train}
    folders, held = split_folders(data, workdir, HOLDOUT.value, SEED.value, train_ids)
    logging.info("held-out train images for selection: %s", held)
    started = time.time()
    if EVAL_ONLY.value:
        from simgan_histo.training import export  # pylint: disable=import-outside-toplevel
        path = export.resolve_export_dir(workdir / "export")
        result = {"export": path, "selection": export.load_inference_json(path)["selection"]}
    else:
        result = task_trainer.train_task(config, workdir, real_dir=folders["train"],
                                         validation=f"labeled:{folders['holdout']}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    train = {"wall_min": (time.time() - started) / 60,
             "cpu_min": (usage.ru_utime + usage.ru_stime) / 60}
    scores = {"reinhard": score_test(result["export"], tests)}
    scores["none"] = score_test(result["export"], tests, stain_norm="none")
    if BF16_INFERENCE.value:
        scores["reinhard_bf16"] = score_test(bf16_export(result["export"], workdir), tests)
    (workdir / "test_metrics.json").write_text(json.dumps(scores, indent=2))
    curve = [json.loads(line) for line in (workdir / "curve.jsonl").read_text().splitlines()]
    summary = {
        "benchmark": "supervised_reference", "protocol": PROTOCOL.value, "preset": PRESET.value,
        "precision": PRECISION.value, "train_images": len(train_ids) - len(held),
        "steps": STEPS.value, "crop": config.task.crop_size, "batch": config.task.batch_size,
        "export": str(result["export"]), "selection": result["selection"],
        "heldout_train_images": held, "this_process": train,
        "train_wall_min_last_segment": curve[-1].get("wall_s", 0) / 60,
        "test_mean_reinhard": scores["reinhard"]["mean"],
        "test_pooled_dice1_reinhard": scores["reinhard"]["pooled"]["dice1"],
        "test_mean_no_stain_norm": scores["none"]["mean"],
        "test_mean_bf16_inference": scores.get("reinhard_bf16", {}).get("mean"),
        "curve": [(r["step"], round(r["task/loss"], 1)) for r in curve[::max(1, len(curve) // 20)]],
        "baseline_classical": {"dice_avg": 0.706, "aji": 0.546},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
