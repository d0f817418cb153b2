"""Whole-slide throughput: end to end vs model only, cost of every other stage, peak RSS.

Usage: nice -n 10 python benchmarks/wsi_speed.py [--model=<export>] [--workdir=/tmp/wsi_speed]
    [--sides=8192,16384] [--precisions=float32,mixed_bfloat16] [--fp32_sides=8192]

Slides: Aperio-style JPEG-Q90 pyramids (OpenSlide-readable, `wsi.pyramid`) of the 30 MoNuSeg
*train* images tiled (with flips) edge to edge to side² px at 0.25 µm/px, cached under
`<workdir>/cache`, plus the CC0 sample slide (0.499 µm/px, read upsampled ×2). Each
(slide, precision) runs `segment.segment_slide` with the default `WsiConfig` in its own
subprocess, so its peak RSS (`os.wait4` rusage of that child alone) is not mixed with another
run's. bf16 = the export's weights rebuilt in mixed_bfloat16 (`export.with_precision`) and
re-exported once (cached), loaded like any export.

Per run: `pipeline_mp_per_s` (tissue MP at the model's µm/px ÷ end-to-end wall, as the run
report's `mp_per_s`), tissue mm²/min, `model_mp_per_s` (the same tissue MP ÷ the wall time of
the model calls on the same tiles in the same run; `model_input_mp_per_s` counts the tiles'
input px instead) and the ratio, and core-seconds (process CPU time, all threads) per tissue
MP of every non-model stage. Stages: the report's StageTimer, split further by timing
wrappers installed in the child (Reinhard inside read_and_stain, the watershed inside
postprocess, the QC writer inside write); `other` = the rest of the wall's CPU (open, stain
estimate). The same-run reference (numpy fp32 2048² matmul GFLOP/s) is sampled 5× before and
after every slide run (median reported) and the 1-minute load average at start and end.
One run per (slide, precision): a 16k² slide takes minutes. Last stdout line: one JSON object.
"""

import functools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
from absl import app
from absl import flags
from absl import logging

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "/work/runs/supervised_fp32/export", "Exported cpu_small model.")
flags.DEFINE_string("workdir", "/tmp/wsi_speed", "Pyramid cache, bf16 export and outputs.")
flags.DEFINE_string("images", str(ROOT.parent / "shared/datasets/monuseg2018/train/images"),
                    "Real H&E tiles for the pyramids.")
flags.DEFINE_list("sides", ["8192", "16384"], "Pyramid sides, px (RSS compared first/last).")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions to run.")
flags.DEFINE_list("fp32_sides", ["8192"], "Sides also run in float32 (16k² fp32 is slow).")
flags.DEFINE_bool("sample_slide", True, "Also run the CC0 sample slide.")
flags.DEFINE_integer("batch_size", None, "WsiConfig.batch_size (default: the config's).")
flags.DEFINE_string("child", None, "Internal: run one slide (JSON spec), write --child_result.")
flags.DEFINE_string("child_result", None, "Internal: the child's result file.")

MPP = 0.25
STAGES = ("read", "stain", "tissue", "watershed", "nuclei", "writers", "qc", "other")


def matmul_gflops(n: int = 2048) -> float:
    a = np.random.default_rng(0).random((n, n), np.float32)
    a @ a
    start = time.perf_counter()
    a @ a
    return 2 * n ** 3 / (time.perf_counter() - start) / 1e9


def tiled_he(images_dir: str, side: int) -> np.ndarray:
    """The MoNuSeg train images repeated edge to edge (flipped on each pass) to side² px."""
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted(pathlib.Path(images_dir).glob("*.png"))]
    if not images:
        raise FileNotFoundError(f"{images_dir}: no PNG images")
    rgb = np.empty((side, side, 3), np.uint8)
    index, tile = 0, images[0].shape[0]
    for y in range(0, side, tile):
        for x in range(0, side, tile):
            image = images[index % len(images)]
            image = image[:, ::-1] if (index // len(images)) % 2 else image
            rgb[y:y + tile, x:x + tile] = image[:side - y, :side - x]
            index += 1
    return rgb


def cached_pyramid(cache: pathlib.Path, side: int) -> pathlib.Path:
    from simgan_histo.wsi import pyramid  # pylint: disable=import-outside-toplevel

    path = cache / f"monuseg_train_{side}.svs"
    if not path.exists():
        logging.info("writing %s", path)
        pyramid.write_pyramid(path, tiled_he(FLAGS.images, side), MPP, quality=90, app_mag=40)
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


def run_child(spec: dict) -> dict:
    """Segments one slide (in this process) and returns its figures."""
    # pylint: disable=import-outside-toplevel
    import resource
    from simgan_histo import config as config_lib, stain, tf_setup
    tf_setup.configure(config_lib.RuntimeConfig())
    from simgan_histo.wsi import model as model_lib, qc, segment
    from simgan_histo.wsi.report import StageTimer

    export_path = spec["model"]
    if spec["precision"] == "mixed_bfloat16":
        export_path = bf16_export(export_path, pathlib.Path(spec["cache"]))
    model = model_lib.from_export(export_path)
    flop_per_px = None
    if spec.get("flops"):
        import keras
        from simgan_histo.models import flops
        from simgan_histo.training import export
        net = keras.models.load_model(export.resolve_export_dir(export_path) / export.KERAS_FILE)
        flop_per_px = flops.forward_flops(net, [(1, 1024, 1024, 3)]) / 1024 ** 2
    baseline_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inner = StageTimer()
    stain.reinhard = _timed(inner, "stain", stain.reinhard)
    model.instances = _timed(inner, "watershed", model.instances)
    qc.QcWriter.write = _timed(inner, "qc", qc.QcWriter.write)
    qc.QcWriter.close = _timed(inner, "qc", qc.QcWriter.close)
    overrides = {} if spec.get("batch_size") is None else {"batch_size": spec["batch_size"]}
    config = config_lib.WsiConfig(**overrides)
    cpu0 = time.process_time()
    report = segment.segment_slide(spec["slide"], model, spec["out"], config, progress=False)
    cpu = time.process_time() - cpu0
    return {"report": report, "inner": inner.as_dict(), "cpu_s": cpu,
            "baseline_rss_mb": baseline_rss_mb, "flop_per_px": flop_per_px}


def _figures(child: dict) -> dict:
    """The issue's figures of one run from the child's report and timers."""
    report, inner = child["report"], child["inner"]
    stages = report["stages"]

    def cpu(table, name):
        return table.get(name, {}).get("cpu_s", 0.0)

    mp, wall = report["tissue_mp"], report["wall_s"]
    model_wall = stages["model"]["wall_s"]
    tile_px = report["processing"]["tile_size_px"] ** 2 * report["tiles"]["processed"]
    core_s = {
        "read": cpu(stages, "read_and_stain") - cpu(inner, "stain"),
        "stain": cpu(inner, "stain") + cpu(stages, "stain_estimate"),
        "tissue": cpu(stages, "tissue"),
        "watershed": cpu(inner, "watershed"),
        "nuclei": cpu(stages, "postprocess") - cpu(inner, "watershed"),
        "writers": cpu(stages, "write") - cpu(inner, "qc"),
        "qc": cpu(inner, "qc"),
    }
    core_s["other"] = child["cpu_s"] - cpu(stages, "model") - sum(core_s.values())
    per_mp = {name: round(value / mp, 4) for name, value in core_s.items()}
    per_mp["non_model_total"] = round(sum(core_s.values()) / mp, 4)
    model_mp_per_s = mp / model_wall
    return {"pipeline_mp_per_s": round(mp / wall, 4),
            "tissue_mm2_per_min": round(report["tissue_mm2"] / wall * 60, 3),
            "model_mp_per_s": round(model_mp_per_s, 4),
            "model_input_mp_per_s": round(tile_px / 1e6 / model_wall, 4),
            "pipeline_over_model": round(mp / wall / model_mp_per_s, 4),
            "core_s_per_mp": per_mp, "model_core_s_per_mp": round(cpu(stages, "model") / mp, 4),
            "tissue_mp": round(mp, 3), "tissue_mm2": round(report["tissue_mm2"], 3),
            "wall_s": round(wall, 2), "nuclei": report["nuclei"],
            "tiles": report["tiles"]["processed"], "baseline_rss_mb": round(
                child["baseline_rss_mb"], 1)}


def spawn(spec: dict, result_path: pathlib.Path) -> dict:
    """Runs `spec` in a child process; its figures plus its own peak RSS (wait4 rusage)."""
    result_path.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, __file__, f"--child={json.dumps(spec)}",
                                f"--child_result={result_path}"], cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"slide run {spec} failed with exit code {process.returncode}")
    child = json.loads(result_path.read_text())
    figures = _figures(child)
    figures["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    if child["flop_per_px"]:
        figures["flop_per_px"] = child["flop_per_px"]
    return figures


def main(argv):
    del argv
    if FLAGS.child:
        result = run_child(json.loads(FLAGS.child))
        pathlib.Path(FLAGS.child_result).write_text(json.dumps(result))
        return
    from simgan_histo import sample_data  # pylint: disable=import-outside-toplevel

    work = pathlib.Path(FLAGS.workdir)
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()[0]]
    slides = [(f"he_{side}", cached_pyramid(cache, int(side))) for side in FLAGS.sides]
    if FLAGS.sample_slide:
        slides.append(("sample", sample_data.sample_slide_path()))
    references = [matmul_gflops() for _ in range(5)]
    runs, flop_per_px = {}, None
    for precision in FLAGS.precisions:
        short = "bf16" if precision == "mixed_bfloat16" else "fp32"
        for name, path in slides:
            if short == "fp32" and name.startswith("he_") and name[3:] not in FLAGS.fp32_sides:
                continue
            spec = {"slide": str(path), "model": FLAGS.model, "precision": precision,
                    "cache": str(cache), "out": str(work / "out"), "flops": flop_per_px is None,
                    "batch_size": FLAGS.batch_size}
            figures = spawn(spec, work / f"run_{name}_{short}.json")
            flop_per_px = figures.pop("flop_per_px", flop_per_px)
            runs[f"{name}/{short}"] = figures
            logging.info("%s/%s: %s", name, short, json.dumps(figures))
            references.extend(matmul_gflops() for _ in range(5))
    load.append(os.getloadavg()[0])
    result = {"benchmark": "wsi_speed", "model": FLAGS.model, "model_flop_per_px": flop_per_px,
              "matmul_fp32_gflop_per_s": round(statistics.median(references), 1),
              "load_average_1min": load, "runs": runs}
    first, last = (f"he_{FLAGS.sides[0]}/bf16", f"he_{FLAGS.sides[-1]}/bf16")
    if first in runs and last in runs and first != last:
        result["peak_rss_ratio_bf16"] = round(runs[last]["peak_rss_mb"]
                                              / runs[first]["peak_rss_mb"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
