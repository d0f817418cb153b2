"""Whole-slide throughput: end to end vs model only, cost of every other stage, peak RSS.

Usage: python benchmarks/wsi_speed.py --model=<export> [--workdir=/tmp/wsi_speed]
    [--runs=8192/fp32,16384/fp32,sample/fp32,sample/bf16]

Slides: Aperio-style JPEG-Q90 pyramids (`.svs`, OpenSlide-readable, `wsi.pyramid`) of the 30
MoNuSeg *train* images tiled (with flips) edge to edge to side² px at 0.25 µm/px, cached under
`<workdir>/cache` (made on the first run), and the CC0 sample slide (0.499 µm/px, read
upsampled ×2). Each run segments one slide with `segment.segment_slide` and the default
`WsiConfig`, in a subprocess of its own, so its peak RSS (`os.wait4` rusage of that child
alone) is not mixed with another run's; peak RSS is compared between the two pyramid sizes.
bf16 = the export's weights rebuilt in mixed_bfloat16 (`export.with_precision`) and
re-exported once (cached), loaded like any export; that export and the model's FLOP per pixel
(graph profiler, `models/flops.py`) are made in a child of their own before the timed runs.

Per run: `pipeline_mp_per_s` (tissue MP at the model's µm/px ÷ end-to-end wall, the run
report's `mp_per_s`), tissue mm²/min, `model_mp_per_s` (the same tissue MP ÷ the wall time of
the model calls on the same tiles in the same run; `model_input_mp_per_s` counts the tiles'
input px instead) and the ratio, and core-seconds (process CPU time, all threads) per tissue
MP of every non-model stage: read, stain (Reinhard on the tiles + the slide's statistics),
tissue (mask + QC thumbnail), watershed, nuclei (ownership, outlines, measurements), shards
(per-batch shard files written and read back), writers (GeoJSON, CSVs), qc (QC images),
other (the rest of the process's CPU time outside the model). They come from the run
report's StageTimer, split further by timing wrappers installed in the child (Reinhard,
its per-slide table build included, inside read_and_stain, the watershed inside
postprocess, the QC writer and shard writes inside write). Same-run reference: numpy fp32
2048² matmul GFLOP/s, sampled 5× before the runs and after each (median); the 1-minute load
average at the start and after each run.
One run per (slide, precision): the 16k² slide alone takes ≈ 6 min on the idle machine, the
default set ≈ 12 min (the first run also writes the pyramids, ≈ 1 min). Last stdout line: one
JSON object.
"""

import functools
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging
import same_run  # noqa: E402  (benchmarks/ is first on the path)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Exported cpu_small model (e.g. a reproduction's export/).")
flags.DEFINE_string("workdir", "/tmp/wsi_speed", "Pyramid cache, bf16 export and outputs.")
flags.DEFINE_string("images", str(ROOT.parent / "shared/datasets/monuseg2018/train/images"),
                    "Real H&E tiles for the pyramids.")
flags.DEFINE_list("runs", ["8192/fp32", "16384/fp32", "sample/fp32", "sample/bf16"],
                  "Slide runs, <pyramid side or 'sample'>/<fp32|bf16>, in this order. Peak "
                  "RSS is compared between the two pyramid sides of the first precision. bf16 "
                  "runs on the sample slide by default: it is ~2x slower than fp32 here.")
flags.DEFINE_integer("batch_size", None, "WsiConfig.batch_size (default: the config's).")
flags.DEFINE_string("child", None, "Internal: run one slide (JSON spec), write --child_result.")
flags.DEFINE_string("child_result", None, "Internal: the child's result file.")

MPP = 0.25
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def cached_pyramid(cache: pathlib.Path, side: int) -> pathlib.Path:
    from simgan_histo.wsi import pyramid  # pylint: disable=import-outside-toplevel

    path = cache / f"monuseg_train_{side}.svs"
    if not path.exists():
        logging.info("writing %s", path)
        pyramid.write_pyramid(path, same_run.tiled_he(FLAGS.images, side), MPP, quality=90,
                              app_mag=40)
    return path


def bf16_export(source: str, cache: pathlib.Path) -> str:
    """The export's weights rebuilt in mixed_bfloat16 and exported (cached by source)."""
    from simgan_histo import config as config_lib  # pylint: disable=import-outside-toplevel
    from simgan_histo.training import export  # pylint: disable=import-outside-toplevel

    version = export.resolve_export_dir(source)
    target = cache / ("bf16_" + str(version.resolve()).strip("/").replace("/", "_"))
    if not target.exists():
        import keras  # pylint: disable=import-outside-toplevel
        config = config_lib.load(version / "assets" / "config.json")
        model = keras.models.load_model(version / export.KERAS_FILE)
        copy = export.with_precision(model, config.task, "mixed_bfloat16")
        settings = {**export.load_inference_json(version), "precision": "mixed_bfloat16"}
        export.export_task_model(copy, target, config, settings)
    return str(target)


def _timed(timer, name, function):
    """`function` with its wall/CPU time accumulated in `timer` under `name` (a plain
    function, so it binds like the original when set on a class)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with timer(name):
            return function(*args, **kwargs)

    return wrapper


def prepare_child(spec: dict) -> dict:
    """The bf16 export (if asked) and the model's FLOP per pixel, in a process of their own
    so that building Keras models does not count in any slide run's peak RSS."""
    # pylint: disable=import-outside-toplevel
    from simgan_histo import config as config_lib, tf_setup
    tf_setup.configure(config_lib.RuntimeConfig())
    import keras
    from simgan_histo.models import flops
    from simgan_histo.training import export

    exports = {"float32": spec["model"]}
    if spec["bf16"]:
        exports["mixed_bfloat16"] = bf16_export(spec["model"], pathlib.Path(spec["cache"]))
    net = keras.models.load_model(export.resolve_export_dir(spec["model"]) / export.KERAS_FILE)
    side = 1024  # a multiple of every preset's stride; FLOPs grow linearly with pixels
    return {"exports": exports,
            "flop_per_px": flops.forward_flops(net, [(1, side, side, 3)]) / side ** 2}


def run_child(spec: dict) -> dict:
    """Segments one slide (in this process) and returns its report and extra timings."""
    # pylint: disable=import-outside-toplevel
    import resource
    from simgan_histo import config as config_lib, stain, tf_setup
    tf_setup.configure(config_lib.RuntimeConfig())
    from simgan_histo.wsi import model as model_lib, qc, segment, shards
    from simgan_histo.wsi.report import StageTimer

    model = model_lib.from_export(spec["export"])
    baseline_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inner, input_px = StageTimer(), [0]
    predict_maps = model.predict_maps

    def counted(batch):
        input_px[0] += int(np.prod(np.shape(batch)[:3]))
        return predict_maps(batch)

    model.predict_maps = counted
    stain.reinhard_table = _timed(inner, "stain", stain.reinhard_table)  # what read_tile calls
    model.instances = _timed(inner, "watershed", model.instances)
    qc.QcWriter.write = _timed(inner, "qc", qc.QcWriter.write)
    qc.QcWriter.close = _timed(inner, "qc", qc.QcWriter.close)
    shards.ShardStore.write = _timed(inner, "shard_write", shards.ShardStore.write)
    overrides = {} if spec.get("batch_size") is None else {"batch_size": spec["batch_size"]}
    config = config_lib.WsiConfig(**overrides)
    cpu0 = time.process_time()
    report = segment.segment_slide(spec["slide"], model, spec["out"], config, progress=False)
    return {"report": report, "inner": inner.as_dict(), "cpu_s": time.process_time() - cpu0,
            "input_px": input_px[0], "baseline_rss_mb": baseline_rss_mb}


def _figures(child: dict) -> dict:
    """The issue's figures of one run from the child's report and timers."""
    report, inner = child["report"], child["inner"]
    stages = report["stages"]

    def cpu(table, name):
        return table.get(name, {}).get("cpu_s", 0.0)

    mp, wall = report["tissue_mp"], report["wall_s"]
    model_wall = stages["model"]["wall_s"]
    core_s = {
        "read": cpu(stages, "read_and_stain") - cpu(inner, "stain"),
        "stain": cpu(inner, "stain") + cpu(stages, "stain_estimate"),
        "tissue": cpu(stages, "tissue"),
        "watershed": cpu(inner, "watershed"),
        "nuclei": cpu(stages, "postprocess") - cpu(inner, "watershed"),
        "shards": cpu(inner, "shard_write") + cpu(stages, "merge_read"),
        "writers": cpu(stages, "write") - cpu(inner, "qc") - cpu(inner, "shard_write"),
        "qc": cpu(inner, "qc"),
    }
    core_s["other"] = child["cpu_s"] - cpu(stages, "model") - sum(core_s.values())
    per_mp = {name: round(value / mp, 4) for name, value in core_s.items()}
    per_mp["non_model_total"] = round(sum(core_s.values()) / mp, 4)
    model_mp_per_s = mp / model_wall
    return {"pipeline_mp_per_s": round(mp / wall, 4),
            "tissue_mm2_per_min": round(report["tissue_mm2"] / wall * 60, 3),
            "model_mp_per_s": round(model_mp_per_s, 4),
            "model_input_mp_per_s": round(child["input_px"] / 1e6 / model_wall, 4),
            "model_input_px_per_tissue_px": round(child["input_px"] / 1e6 / mp, 3),
            "pipeline_over_model": round(mp / wall / model_mp_per_s, 4),
            "core_s_per_mp": per_mp, "model_core_s_per_mp": round(cpu(stages, "model") / mp, 4),
            "tissue_mp": round(mp, 3), "tissue_mm2": round(report["tissue_mm2"], 3),
            "wall_s": round(wall, 2), "nuclei": report["nuclei"],
            "tiles": report["tiles"]["processed"], "baseline_rss_mb": round(
                child["baseline_rss_mb"], 1)}


def spawn(spec: dict, result_path: pathlib.Path):
    """Runs `spec` in a child process: (its result, its own peak RSS in MB from wait4)."""
    result_path.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, __file__, f"--child={json.dumps(spec)}",
                                f"--child_result={result_path}"], cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"child {spec} failed with exit code {process.returncode}")
    return json.loads(result_path.read_text()), usage.ru_maxrss / 1024


def _targets(runs: dict) -> dict:
    """The issue's targets, judged on the MoNuSeg pyramids (on the sample slide for a
    precision with no pyramid run)."""
    pyramids = {key: run for key, run in runs.items() if key.startswith("he_")}
    targets = {}
    for short in PRECISIONS:
        judged = ([key for key in pyramids if key.endswith(short)]
                  or [key for key in runs if key.endswith(short)])
        if judged:
            rate = min(runs[key]["pipeline_mp_per_s"] for key in judged)
            targets[f"pipeline_mp_per_s_{short}_min"] = rate
            targets[f"pipeline_ge_1_mp_per_s_{short}"] = rate >= 1.0
            targets[f"pipeline_{short}_runs"] = judged
    non_model = [run["core_s_per_mp"]["non_model_total"] for run in pyramids.values()]
    if non_model:
        targets["non_model_core_s_per_mp_max"] = max(non_model)
        targets["non_model_le_0_3"] = max(non_model) <= 0.3
    return targets


def main(argv):
    del argv
    if FLAGS.child:
        spec = json.loads(FLAGS.child)
        result = prepare_child(spec) if spec["mode"] == "prepare" else run_child(spec)
        pathlib.Path(FLAGS.child_result).write_text(json.dumps(result))
        return
    from simgan_histo import sample_data  # pylint: disable=import-outside-toplevel

    if not FLAGS.model:
        raise app.UsageError("--model=<export folder> is required, e.g. the export/ of "
                             "benchmarks/labelfree_reproduction.py (BENCHMARKS.md)")
    work = pathlib.Path(FLAGS.workdir)
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()[0]]
    plan = [tuple(run.split("/")) for run in FLAGS.runs]
    for slide, short in plan:
        if short not in PRECISIONS or not (slide == "sample" or slide.isdigit()):
            raise app.UsageError(f"--runs: {slide}/{short}: expected <side|sample>/<fp32|bf16>")
    slides = {slide: (sample_data.sample_slide_path() if slide == "sample"
                      else cached_pyramid(cache, int(slide))) for slide, _ in plan}
    prepared, _ = spawn({"mode": "prepare", "model": FLAGS.model, "cache": str(cache),
                         "bf16": any(short == "bf16" for _, short in plan)},
                        work / "prepare.json")
    references = [same_run.numpy_matmul_gflops(2048, repeats=1) for _ in range(5)]
    runs = {}
    for slide, short in plan:
        name = "sample" if slide == "sample" else f"he_{slide}"
        out = work / "out" / f"{name}_{short}"
        shutil.rmtree(out, ignore_errors=True)  # no shards of an earlier run are resumed
        spec = {"mode": "run", "slide": str(slides[slide]), "out": str(out),
                "export": prepared["exports"][PRECISIONS[short]], "batch_size": FLAGS.batch_size}
        child, peak_rss_mb = spawn(spec, work / f"run_{name}_{short}.json")
        runs[f"{name}/{short}"] = dict(_figures(child), peak_rss_mb=round(peak_rss_mb, 1))
        logging.info("%s/%s: %s", name, short, json.dumps(runs[f"{name}/{short}"]))
        references.extend(same_run.numpy_matmul_gflops(2048, repeats=1) for _ in range(5))
        load.append(os.getloadavg()[0])
    result = {"benchmark": "wsi_speed", "model": FLAGS.model,
              "model_flop_per_px": round(prepared["flop_per_px"]),
              "matmul_fp32_gflop_per_s": round(statistics.median(references), 1),
              "load_average_1min": [round(value, 2) for value in load], "runs": runs,
              "targets": _targets(runs)}
    pyramids = [(slide, short) for slide, short in plan if slide != "sample"]
    pair = [f"he_{slide}/{short}" for slide, short in pyramids if short == pyramids[0][1]][:2]
    if len(pair) == 2 and pair[0] != pair[1]:
        ratio = runs[pair[1]]["peak_rss_mb"] / runs[pair[0]]["peak_rss_mb"]
        result["targets"].update({"peak_rss_ratio": round(ratio, 3), "peak_rss_runs": pair,
                                  "peak_rss_ratio_le_1_2": ratio <= 1.2})
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
