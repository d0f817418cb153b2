"""End-to-end label-free reproduction on real data (issue 9): train with zero labels, evaluate.

Usage:
  python benchmarks/labelfree_reproduction.py --protocol=monuseg --workdir=runs/repro \
      --budget_min=30 --seed=0 [--preset=cpu_small] [--export_dir=DIR] [--ablation=NAME] \
      [--task_share=F] [--task_steps=N] [--layout_model=EXPORT]

Protocols (DESIGN §5): `monuseg` trains on the 30 MoNuSeg train IMAGES (labels unused) and
tests on the 14 MoNuSeg test images; `kumar` trains on the 16 Kumar-2017 train images and
tests on Kumar's 14 test images. Every hyperparameter, watershed thresholds included, is
chosen on held-out synthetic patches. The run resumes from its workdir. The last stdout
line is one JSON object: metrics (DESIGN §3), config, seed, commit, wall time.
"""

import json
import pathlib
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from flags import common  # noqa: E402  pylint: disable=wrong-import-position
from simgan_histo import budget  # noqa: E402  pylint: disable=wrong-import-position

flags.adopt_module_key_flags(common)
PROTOCOL = flags.DEFINE_enum("protocol", "monuseg", ["monuseg", "kumar"], "Data protocol.")
EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Model export (default <workdir>/export).")
BUDGET_MIN = flags.DEFINE_float(
    "budget_min", None, "Scale the preset's schedule to about this many CPU minutes "
    "(default: the preset as it is).")
DATA = flags.DEFINE_string("data", None, "MoNuSeg folder (default ../shared/datasets/monuseg2018).")
ABLATION = flags.DEFINE_enum(
    "ablation", "none",
    ["none", "no_importance", "no_reference", "no_hard", "no_gan", "plus_real"],
    "Remove one ingredient, or plus_real: mix the tissue images' own labels into the task "
    "net's batches (paper Table 3).")
TASK_SHARE = flags.DEFINE_float(
    "task_share", 0.75, "With --budget_min: the fraction of the minutes left after the GAN "
    "warm-ups that goes to task-net steps, the rest to joint GAN iterations (0.75: Kumar, "
    "3 seeds, BENCHMARKS.md; 0.375 is cpu_small's own ratio, the split before this flag).")
# Checked at parsing, with or without --budget_min, so a typo never runs for minutes first.
flags.register_validator("task_share", lambda value: 0.0 < value < 1.0,
                         message="--task_share must lie in (0, 1)")
TASK_STEPS = flags.DEFINE_integer(
    "task_steps", None, "Task-net steps instead of the budget's share (a diagnosis: is the "
    "task net's training the ceiling? A finished refiner stage in the workdir is reused).")
LAYOUT_MODEL = flags.DEFINE_string(
    "layout_model", None, "A finished run's export: its net's instances on the tissue become "
    "the synthetic nuclei's layout (a second round; SynthesisConfig.layout_source='net').")
FLAGS = flags.FLAGS

MPP = 0.25  # MoNuSeg: 40×
FIG6_TISSUES, FIG6_PATCHES, FIG6_SEED_OFFSET = 4, 4, 10007  # a stream the trainer never used
FIG7_PATCHES = 6  # highest- and lowest-weighted patches shown


def ablate(config, ablation: str):
    if ablation == "no_importance":
        return config.replace(gan={"use_importance_weights": False},
                              task={"use_importance_weights": False})
    if ablation == "no_hard":
        return config.replace(gan={"use_hard_examples": False})
    if ablation == "no_reference":
        return config.replace(refiner={"use_reference": False},
                              discriminator={"use_reference": False})
    return config


def link_folder(folder: pathlib.Path, pairs, index: int) -> pathlib.Path:
    """A folder of symlinks to the protocol's test images (or labels), for predict/evaluate."""
    from simgan_histo.training import task_data  # pylint: disable=import-outside-toplevel
    folder.mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        task_data.link(pair[index], folder / pair[index].name)
    return folder


def write_figures(workdir: pathlib.Path, records: dict, config, tissue, organs, result,
                  images: pathlib.Path, labels: pathlib.Path, predictions: pathlib.Path) -> dict:
    """PNG figures in `<workdir>/figures`: test overlays of the best and worst organ; with a
    GAN, the Fig. 6 analog (initial patches refined with references of different tissues)
    and the Fig. 7 analog (importance weights). Returns what was drawn."""
    # pylint: disable=import-outside-toplevel
    import numpy as np
    from simgan_histo.evaluation import figures, predict_lib
    folder = workdir / "figures"
    best, worst, means = figures.organ_extremes(result["per_image"], organs)
    drawn = {"organ_aji": means, "overlays": []}
    for label, organ in (("best", best), ("worst", worst)):
        for name in sorted(n for n in result["per_image"] if organs.get(n) == organ):
            path = folder / f"overlay_{label}_{organ}_{name}.png"
            figures.write_png(path, figures.overlay(
                predict_lib.read_rgb(images / f"{name}.png"),
                predict_lib.read_labels(labels / f"{name}.png"),
                predict_lib.read_labels(predictions / f"{name}.png")))
            drawn["overlays"].append(path.name)
    if "refiner" not in records:  # the no-GAN ablation has no refiner or discriminator
        return drawn
    import tensorflow as tf
    from simgan_histo import synthesis
    from simgan_histo.evaluation import realism
    from simgan_histo.training import export, gan_export, rescore, task_data

    first_per_organ = {}
    for path in tissue:
        first_per_organ.setdefault(organs.get(path.stem, "unknown"), path)
    source = synthesis.TissueSource.from_paths(list(first_per_organ.values())[:FIG6_TISSUES],
                                               config.synthesis, mpp=MPP)
    seed = config.runtime.seed + FIG6_SEED_OFFSET
    initial = synthesis.make_batch(source, seed, range(FIG6_PATCHES))["image"]
    references = realism.real_crops(source.tiles, range(source.num_tiles),
                                    config.synthesis.patch_size, np.random.default_rng([seed, 3]))
    count, tissues = len(initial), len(references)
    refine = export.load_serving_function(records["refiner"]["refiner_export"])
    refined = refine(image=tf.constant(np.repeat(initial, tissues, 0), tf.float32),
                     reference=tf.constant(np.tile(references, (count, 1, 1, 1)), tf.float32))
    refined = gan_export.refined_to_uint8(refined)
    figures.refinement_figure(folder / "fig6_refinement.png", initial, references,
                              refined.reshape((count, tissues) + refined.shape[1:]))
    # The patches the task net trained on: the buffer, or the fresh refined set.
    patches = task_data.PatchFiles([records.get("refined", records["refiner"])["patches"]])
    saved = records["task"].get("rescored_weights")  # what the task net trained with
    weights = (np.load(saved) if saved else
               rescore.rescore(patches, records["refiner"]["discriminator_export"],
                               config.gan.importance_ratio, config.gan.importance_clip))
    top, bottom = figures.extremes(weights, FIG7_PATCHES)
    shown = np.concatenate([top, bottom])
    pictures = dict(zip(shown.tolist(), patches.read(shown, ["image"])["image"]))
    drawn["importance"] = figures.importance_figure(
        folder / "fig7_importance.png", weights, pictures, config.gan.importance_clip,
        FIG7_PATCHES)
    drawn["fig6"] = {"patches": count, "tissues": tissues}
    return drawn


def main(argv):
    del argv
    started = time.perf_counter()
    task_share = TASK_SHARE.value if BUDGET_MIN.value is not None else None
    config = ablate(budget.scaled_config(common.to_config(FLAGS), BUDGET_MIN.value, task_share),
                    ABLATION.value)
    if LAYOUT_MODEL.value:
        model = str(pathlib.Path(LAYOUT_MODEL.value).resolve())
        config = config.replace(synthesis={"layout_source": "net", "layout_model": model})
    if TASK_STEPS.value is not None:
        config = config.replace(task={"train_steps": TASK_STEPS.value})
    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel
    tf_setup.configure(config.runtime)
    # pylint: disable=import-outside-toplevel
    from simgan_histo import api, pipeline
    from simgan_histo.evaluation import errors, metrics, predict_lib, protocols
    from simgan_histo.training import export

    data = pathlib.Path(DATA.value or pathlib.Path(__file__).resolve().parents[2] / "shared" /
                        "datasets" / "monuseg2018")
    workdir = pathlib.Path(FLAGS.workdir or f"runs/repro_{PROTOCOL.value}")
    tissue, tests = protocols.protocol_files(data, PROTOCOL.value)
    real_dir = None
    if ABLATION.value == "plus_real":  # the protocol's train labels: no longer label-free
        pairs = [(path, data / "train" / "labels" / path.name) for path in tissue]
        real_dir = workdir / "real"
        link_folder(real_dir / "images", pairs, 0)
        link_folder(real_dir / "labels", pairs, 1)
    records = pipeline.run_labelfree(config, workdir, tissue, mpp=MPP, export_dir=EXPORT_DIR.value,
                                     use_gan=ABLATION.value != "no_gan", real_dir=real_dir)
    images = link_folder(workdir / "test_images", tests, 0)
    labels = link_folder(workdir / "test_labels", tests, 1)
    model = api.load(records["task"]["export"])
    predictions = workdir / "predictions"
    predict_lib.predict_folder(model.predict_labels, images, predictions, None)
    result = predict_lib.evaluate_folder(predictions, labels)
    predict_lib.write_json(workdir / "metrics.json", result)
    organs = {entry["id"]: entry["organ"]
              for entry in json.loads((data / "manifest.json").read_text())["images"]}
    analysis = errors.group_errors(errors.analyse_folders(predictions, labels, images), organs)
    predict_lib.write_json(workdir / "error_analysis.json", analysis)
    drawn = write_figures(workdir, records, config, tissue, organs, result, images, labels,
                          predictions)
    line = {"protocol": PROTOCOL.value, "ablation": ABLATION.value, "seed": config.runtime.seed,
            "preset": config.preset, "budget_min": BUDGET_MIN.value,
            "task_share": task_share, "joint_steps": config.gan.joint_steps,
            "task_steps": config.task.train_steps, "mean": result["mean"],
            "pooled": result["pooled"], "n_images": result["n_images"],
            "errors": analysis["all"], "figures": drawn,
            "real_images": pipeline.real_labeled_images(records),
            "self_training": pipeline.self_training_summary(records),
            "export": records["task"]["export"], "selection": records["task"]["selection"],
            "commit": export.git_commit(), "config_hash": config.hash(),
            "wall_s": round(time.perf_counter() - started, 1),
            "reproduce": f"python predict.py --model={records['task']['export']} "
                         f"--images={images} --out=pred && python evaluate.py --pred=pred "
                         f"--gt={labels}"}
    print(metrics.format_table(result))
    print(errors.format_groups(analysis))
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    app.run(main)
