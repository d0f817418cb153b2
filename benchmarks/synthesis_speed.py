"""GAN-free synthesis speed on one core, against the release's per-patch pipeline, plus realism.

Usage: python benchmarks/synthesis_speed.py [--tissue=DIR] [--mpp=0.25] [--tiles=8]
    [--patch_size=200] [--patches=2000] [--rounds=5] [--preset=cpu_small]

One process, OpenCV and BLAS on one thread. The tiles are prepared once (`tile_prepare_s`,
reported apart from the rate). Each round times `patches / rounds` patches of this module
(in batches of `generator.CHUNK`, as `synthesize_to_file` and its workers make them),
then `--naive_patches` of the naive pipeline (per patch: HED, Otsu, super-segmentation,
Telea inpainting of the crop, sub-segmentation colour, eosin texture, composite: what the
release recomputed for every patch), then an fp32 matmul (numpy, one thread) as the
machine reference; medians over rounds are reported. `stage_ms` is the mean time per patch
of each stage. Realism checks (issue 3) run on `--realism_patches` patches. Last stdout
line: one JSON object. On a shared machine the wall-clock rate (`patches_per_s_per_core`)
understates what one free core does; `patches_per_cpu_s` (patches per second of process CPU
time) and the matmul reference give the scale, and `load_average_1min` the context.
`inpainted_share_survey` is the share of each image of the tissue folder that the
super-segmentation inpaints (DESIGN §7: the less purple non-nuclear tissue inpainted, the
fewer false nuclei), without the inpainting itself.
"""

import collections
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one core: before numpy is imported

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from skimage import filters  # noqa: E402

sys.path.insert(0, ".")  # run from the checkout: `python benchmarks/synthesis_speed.py`

from simgan_histo import config as config_lib  # noqa: E402
from simgan_histo import sample_data  # noqa: E402
from simgan_histo import stain  # noqa: E402
from simgan_histo import synthesis  # noqa: E402
from simgan_histo.synthesis import compose  # noqa: E402
from simgan_histo.synthesis import generator  # noqa: E402
from simgan_histo.synthesis import realism  # noqa: E402
from simgan_histo.synthesis import source as source_lib  # noqa: E402
from simgan_histo.synthesis import tissue as tissue_lib  # noqa: E402
import same_run  # noqa: E402  (benchmarks/ is first on the path)

MONUSEG_TRAIN = pathlib.Path("../shared/datasets/monuseg2018/train/images")
FLAGS = flags.FLAGS
flags.DEFINE_string("tissue", None, "Tissue folder or slide (default: MoNuSeg train images if "
                    "present, else the sample slide).")
flags.DEFINE_float("mpp", None, "µm/px of the tissue files (default: 0.25 for MoNuSeg).")
flags.DEFINE_integer("tiles", 8, "Tissue tiles to prepare (>= 5).")
flags.DEFINE_string("preset", "cpu_small", "Preset whose synthesis settings are used.")
flags.DEFINE_integer("patch_size", 200, "Patch side, px.")
flags.DEFINE_integer("patches", 2000, "Patches timed in total (over all rounds).")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (median reported).")
flags.DEFINE_integer("naive_patches", 20, "Naive-pipeline patches per round.")
flags.DEFINE_integer("realism_patches", 500, "Patches for the realism checks.")
flags.DEFINE_bool("inpaint_survey", True, "Also report the inpainted share (super-segmentation "
                  "only, no Telea) of every image in the tissue folder.")


def naive_patch(rng, tile, mask: np.ndarray, config) -> np.ndarray:
    """The release's per-patch work: Otsu + Telea on the crop, then the composite."""
    size = mask.shape[0]
    height, width = tile.shape
    y, x = rng.integers(0, height - size), rng.integers(0, width - size)
    crop = tile.rgb[y:y + size, x:x + size]
    stains = stain.hed(crop)
    scaled = (stains[..., 0] - stains[..., 0].min()) / max(float(np.ptp(stains[..., 0])), 1e-9)
    otsu = (scaled < filters.threshold_otsu(scaled)).mean() * 100
    low, nuclear, high = np.percentile(scaled, [100 - (100 - otsu) * 1.08,
                                                100 - (100 - otsu) * 0.92, 99])
    supersegmentation = cv2.GaussianBlur((scaled > low).astype(np.float32), (0, 0), 0.5) > 0.5
    background = cv2.inpaint(crop, supersegmentation.astype(np.uint8), config.inpaint_radius,
                             cv2.INPAINT_TELEA).astype(np.float32)
    sub = (scaled >= nuclear) & (scaled <= high)
    colour = crop[sub].mean(axis=0) if sub.any() else np.full(3, 80.0)
    eosin = stains[..., 1]
    texture = (eosin - eosin.min()) / max(float(np.ptp(eosin)), 1e-9) * config.texture_gain
    nuclear_rgb = texture[..., None] * colour
    weights = cv2.GaussianBlur((mask > 0).astype(np.float32), (7, 7), 0)[..., None]
    return np.clip(nuclear_rgb * weights + background * (1 - weights), 0, 255).astype(np.uint8)


def inpaint_survey(tissue, config, mpp) -> dict:
    """Inpainted share per image of a tissue folder (`tissue.inpaint_mask`), resampled as
    the source reads it: {mean, min, max, images, per_image}."""
    shares = {}
    for path in source_lib.list_files(tissue):
        for name, rgb in source_lib.read_tiles(path, config, mpp, collections.Counter()):
            shares[name] = round(float(tissue_lib.inpaint_mask(rgb, config).mean()), 4)
    values = list(shares.values())
    return {"mean": round(float(np.mean(values)), 4), "min": min(values), "max": max(values),
            "images": len(values), "per_image": shares}


def tissue_source(config):
    tissue = FLAGS.tissue or (MONUSEG_TRAIN if MONUSEG_TRAIN.exists()
                              else sample_data.sample_slide_path())
    mpp = FLAGS.mpp if FLAGS.mpp else (0.25 if pathlib.Path(tissue) == MONUSEG_TRAIN else None)
    started = time.perf_counter()
    source = synthesis.TissueSource.from_paths(tissue, config, mpp=mpp, max_tiles=FLAGS.tiles)
    return source, time.perf_counter() - started, str(tissue), mpp


def main(argv):
    del argv
    cv2.setNumThreads(1)
    config = dataclasses.replace(config_lib.get_preset(FLAGS.preset).synthesis,
                                 patch_size=FLAGS.patch_size)
    source, prepare_s, tissue, mpp = tissue_source(config)
    if source.num_tiles < 5:
        raise app.UsageError(f"need >= 5 tissue tiles, got {source.num_tiles}")
    per_round = -(-FLAGS.patches // FLAGS.rounds)
    canvas = config.patch_size + 2 * config.margin_px
    masks = synthesis.make_batch(source, 1000, range(FLAGS.naive_patches))["mask"]
    masks = np.pad(masks, ((0, 0),) + ((config.margin_px,) * 2,) * 2)
    synthesis.make_batch(source, 999, range(20))  # warm-up: banks, caches
    rates, cpu_rates, naive_s, references = [], [], [], []
    timer = compose.StageTimer()
    for round_index in range(FLAGS.rounds):
        start, cpu_start = time.perf_counter(), time.process_time()
        timer.start()
        for first in range(0, per_round, generator.CHUNK):  # batches as the library makes them
            synthesis.make_batch(source, round_index,
                                 range(first, min(first + generator.CHUNK, per_round)),
                                 timer=timer)
        rates.append(per_round / (time.perf_counter() - start))
        cpu_rates.append(per_round / (time.process_time() - cpu_start))
        rng = np.random.default_rng(round_index)
        start = time.perf_counter()
        for k in range(FLAGS.naive_patches):
            naive_patch(rng, source.tiles[k % source.num_tiles], masks[k][:canvas, :canvas],
                        config)
        naive_s.append((time.perf_counter() - start) / FLAGS.naive_patches)
        references.append(same_run.numpy_matmul_gflops(1024, repeats=5))
        print(f"round {round_index}: {rates[-1]:.0f} patches/s, naive "
              f"{1 / naive_s[-1]:.1f} patches/s, matmul {references[-1]:.0f} GFLOP/s",
              flush=True)
    rate, naive = statistics.median(rates), statistics.median(naive_s)
    total = per_round * FLAGS.rounds
    stage_ms = {stage: round(seconds / total * 1e3, 4) for stage, seconds in timer.seconds.items()}
    realism_batch = synthesis.make_batch(source, 2024, range(FLAGS.realism_patches))
    print(json.dumps({
        "benchmark": "synthesis_speed", "preset": FLAGS.preset, "patch_size": config.patch_size,
        "tissue": tissue, "tiles": source.num_tiles, "patches_timed": total,
        "rounds": FLAGS.rounds, "patches_per_s_per_core": round(rate, 1),
        "patches_per_s_rounds": [round(r, 1) for r in rates],
        "patches_per_cpu_s": round(statistics.median(cpu_rates), 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "ms_per_patch": round(1e3 / rate, 3), "stage_ms": stage_ms,
        "tile_prepare_s": round(prepare_s, 2),
        "tile_prepare_s_per_tile": round(prepare_s / source.num_tiles, 3),
        "inpainted_share_mean": round(float(np.mean([t.inpainted_fraction
                                                     for t in source.tiles])), 3),
        "inpainted_share_tiles": [round(t.inpainted_fraction, 3) for t in source.tiles],
        "inpainted_share_survey": (inpaint_survey(tissue, config, mpp)
                                   if FLAGS.inpaint_survey and pathlib.Path(tissue).is_dir()
                                   else None),
        "naive_ms_per_patch": round(naive * 1e3, 2), "ratio_vs_naive": round(naive * rate, 1),
        "matmul_fp32_gflop_per_s_1thread": round(statistics.median(references), 1),
        "realism": realism.report(realism_batch, source.tiles)}))


if __name__ == "__main__":
    app.run(main)
