"""How much of a label-free run's test gap is the transfer of its choices? (a DIAGNOSIS)

Usage: python benchmarks/threshold_transfer.py --run=runs/repro_kumar_b30_v2

For a finished `labelfree_reproduction.py` workdir: (1) the watershed thresholds on a grid
wider than the run's, scored on the run's own held-out synthetic patches — is the selected
point an interior optimum or a grid edge? (2) on the run's test images, the exported
thresholds against the best thresholds *for the test set* (an oracle), with and without
the export's stain normalisation. The oracle uses test labels: it measures what better
threshold or stain choices could give at most, and must never be used to choose them.
Last stdout line: one JSON object.
"""

import dataclasses
import json
import pathlib
import sys

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

RUN = flags.DEFINE_string("run", None, "A finished labelfree_reproduction.py workdir.",
                          required=True)
SEGS = flags.DEFINE_list("seg", ["0.45", "0.6", "0.75", "0.85"],
                         "Segmentation thresholds of the wide grid.")
DETS = flags.DEFINE_list("det", ["0.02", "0.03", "0.07", "0.15"],
                         "Detection thresholds of the wide grid.")
SIGMAS = flags.DEFINE_list("sigma", ["1", "2", "3"], "Detection smoothing σ of the wide grid.")


def score_grid(model, images, labels, task_config, name):
    """{selected, best} of the wide grid on these images (AJI and Dice-avg, per-image means)."""
    # pylint: disable=import-outside-toplevel
    from simgan_histo.training import task_validation
    chosen = model.settings.thresholds
    task_config = dataclasses.replace(  # the exported point is always on the grid
        task_config,
        seg_threshold_grid=tuple(sorted({*task_config.seg_threshold_grid, chosen.seg_threshold})),
        det_threshold_grid=tuple(sorted({*task_config.det_threshold_grid, chosen.det_threshold})),
        det_sigma_grid=tuple(sorted({*task_config.det_sigma_grid, chosen.det_sigma})),
        min_area_grid=tuple(sorted({*task_config.min_area_grid, chosen.min_area_px})),
        compactness_grid=tuple(sorted({*task_config.compactness_grid, chosen.compactness})),
        flood_on_grid=tuple(sorted({*task_config.flood_on_grid, chosen.flood_on})),
        merge_solidity_grid=tuple(sorted({*task_config.merge_solidity_grid,
                                          chosen.merge_solidity})),
        seed_h_grid=tuple(sorted({*task_config.seed_h_grid, chosen.seed_h})))
    maps = []
    for image in images:
        segmentation, detection = model.predict_maps(image)
        maps.append({"segmentation": segmentation, "detection": detection})
    held = task_validation.ValidationSet(name, list(images), [None] * len(images), list(labels))
    result = task_validation.grid_search(maps, held, task_config)
    point = [chosen.seg_threshold, chosen.det_threshold, chosen.det_sigma, chosen.min_area_px]
    # Settings that ignore the detection map have one (det, σ) in the grid.
    selected = [row for row in result["grid"]
                if (row[:4] == point if chosen.reads_detection
                    else [row[0], row[3]] == point[::3])
                and row[6:8] == [chosen.compactness, chosen.flood_on]
                and row[9:11] == [chosen.merge_solidity, chosen.seed_h]]
    return {"selected": ({"aji": round(selected[0][4], 4), "dice_avg": round(selected[0][5], 4)}
                         if selected else None),
            "best": {**result["thresholds"], "aji": round(result["scores"]["aji"], 4),
                     "dice_avg": round(result["scores"]["dice_avg"], 4)}}


def main(argv):
    del argv
    run = pathlib.Path(RUN.value)
    stages = {stage: run / stage / "done.json" for stage in ("task", "refiner", "synthesis")}
    if (run / "self_training" / "done.json").exists():  # the exported net is the second round's
        stages["task"] = run / "self_training" / "done.json"
    if not stages["task"].exists():  # checked before TensorFlow starts
        raise app.UsageError(f"{run}: no finished task stage ({stages['task']} is missing); "
                             f"finish the run with labelfree_reproduction.py first")
    # pylint: disable=import-outside-toplevel
    from simgan_histo import tf_setup
    tf_setup.import_tensorflow()
    import simgan_histo
    from simgan_histo import config as config_lib
    from simgan_histo.evaluation import predict_lib
    from simgan_histo.training import task_data, task_validation

    config = config_lib.Config.from_json((run / "config.json").read_text())
    record = json.loads(stages["task"].read_text())
    export = pathlib.Path(record["export"])
    task = config.replace(task={
        "seg_threshold_grid": tuple(float(v) for v in SEGS.value),
        "det_threshold_grid": tuple(float(v) for v in DETS.value),
        "det_sigma_grid": tuple(float(v) for v in SIGMAS.value),
        "selection_metric": "aji"}).task
    # The set the task stage selected on, as it recorded it: the held-out rows of the patch
    # file it trained on (the refined set, the buffer, or initial patches for no_gan; a
    # function of files, fraction, cap and seed), or a separate file (validation_patches=
    # "fresh").
    producer = next((path for path in (run / "refined" / "done.json", stages["refiner"],
                                       stages["synthesis"]) if path.exists()), None)
    if producer is None:
        raise app.UsageError(f"{run}: no finished refiner, refined or synthesis stage")
    patches = task_data.PatchFiles([json.loads(producer.read_text())["patches"]],
                                   config.task.validation_fraction,
                                   config.task.max_validation_patches, config.runtime.seed)
    synthetic = task_validation.from_name(record["selection"]["validation"], patches)
    # Synthetic patches are what the net trained on: no stain normalisation, as in training.
    line = {"run": str(run), "export": str(export), "synthetic_patches": len(synthetic),
            "synthetic": score_grid(simgan_histo.load(export, stain_norm="none"),
                                    synthetic.images, synthetic.labels, task, "synthetic")}
    paths = predict_lib.list_files(run / "test_images")
    images = [predict_lib.read_rgb(path) for path in paths]
    labels = [predict_lib.read_labels(run / "test_labels" / path.name) for path in paths]
    for stain_norm in ("reinhard", "none"):
        model = simgan_histo.load(export, stain_norm=stain_norm)
        line[f"test_{stain_norm}"] = score_grid(model, images, labels, task, "test (oracle)")
        print(f"test, stain {stain_norm}: {line[f'test_{stain_norm}']}", flush=True)
    print(json.dumps(line))


if __name__ == "__main__":
    app.run(main)
